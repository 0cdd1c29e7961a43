"""The event store against a real PostgreSQL: idempotent appends, commit-safe reads, append-only."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from eventstore import START, AppendStatus, Checkpoint, EventStore, NewEvent, StoredEvent
from eventstore.store import append_events, read_after
from tests.ids import fresh_id

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def new_event(stream: str, payload: dict[str, Any], event_id: uuid.UUID | None = None) -> NewEvent:
    return NewEvent(
        event_id=event_id or uuid.uuid4(),
        stream_id=stream,
        event_type="Tested",
        schema_version=1,
        payload=payload,
        metadata={"requestId": "test"},
        received_at=NOW,
    )


def read_everything(store: EventStore, *, timeout: float = 10.0) -> list[StoredEvent]:
    """Every event up to the current head, in commit-safe order.

    The fence is cluster-wide: a transaction open anywhere on the server (another test
    process, say) holds it back, so keep reading until the head has come through.
    """
    head = store.head()
    events, after = [], START
    deadline = time.monotonic() + timeout
    while True:
        batch = store.read_all(after, limit=100)
        events.extend(batch)
        if batch:
            after = batch[-1].checkpoint
        if head in {e.position for e in events} or head == 0:
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"head {head} not readable within {timeout}s")
        if not batch:
            time.sleep(0.02)


def test_appended_events_are_read_back_with_every_field(pool: ConnectionPool[Any]) -> None:
    store = EventStore(pool)
    stream = fresh_id("stream")
    [answer] = store.append([new_event(stream, {"value": 1.5, "nested": {"a": [1, 2]}})])

    assert answer.status is AppendStatus.APPENDED
    [stored] = store.read_stream(stream)
    assert stored.position == answer.position
    assert stored.event_id == answer.event_id
    assert stored.payload == {"value": 1.5, "nested": {"a": [1, 2]}}
    assert stored.metadata == {"requestId": "test"}
    assert stored.event_type == "Tested" and stored.schema_version == 1
    assert stored.received_at == NOW
    assert stored.transaction_id > 0


def test_events_of_many_requests_in_one_append_keep_their_own_metadata_and_time(
    pool: ConnectionPool[Any],
) -> None:
    # The group commit appends several requests' events together; each request's metadata
    # and received time travel once in the document, and every event must get its own back.
    store = EventStore(pool)
    stream = fresh_id("stream")
    first, second = {"requestId": "first"}, {"requestId": "second"}
    equal_but_apart = {"requestId": "first"}
    later = datetime(2026, 1, 1, 0, 0, 1, 250, tzinfo=UTC)
    sent = [
        (first, NOW, {"type": "Kept", "v": 2}),
        (second, NOW, {"v": 3}),
        (first, later, {"v": 4}),
        (equal_but_apart, NOW, {"v": 5}),
        ({}, later, {"v": 6}),
        (first, NOW, {"v": 7}),
    ]
    events = [
        NewEvent(
            event_id=uuid.uuid4(),
            stream_id=stream,
            event_type=f"Tested{index}",
            schema_version=index + 1,
            payload=payload,
            metadata=metadata,
            received_at=moment,
        )
        for index, (metadata, moment, payload) in enumerate(sent)
    ]
    answers = store.append(events)

    stored = store.read_stream(stream)
    assert [e.position for e in stored] == [a.position for a in answers]
    assert [(e.event_id, e.metadata, e.received_at, e.payload) for e in stored] == [
        (e.event_id, e.metadata, e.received_at, e.payload) for e in events
    ]
    assert [(e.event_type, e.schema_version) for e in stored] == [
        (f"Tested{index}", index + 1) for index in range(len(sent))
    ]


def test_an_event_sent_again_is_a_duplicate_and_is_not_stored_twice(
    pool: ConnectionPool[Any],
) -> None:
    store = EventStore(pool)
    stream, event_id = fresh_id("stream"), uuid.uuid4()
    [first] = store.append([new_event(stream, {"v": 1}, event_id)])
    [again] = store.append([new_event(stream, {"v": 1}, event_id)])

    assert again.status is AppendStatus.DUPLICATE
    assert again.position == first.position
    assert len(store.read_stream(stream)) == 1


def test_a_different_payload_under_a_stored_id_is_a_conflict_and_the_first_stands(
    pool: ConnectionPool[Any],
) -> None:
    store = EventStore(pool)
    stream, event_id = fresh_id("stream"), uuid.uuid4()
    [first] = store.append([new_event(stream, {"v": 1}, event_id)])
    [clash] = store.append([new_event(stream, {"v": 2}, event_id)])

    assert clash.status is AppendStatus.CONFLICT
    assert clash.position == first.position
    [stored] = store.read_stream(stream)
    assert stored.payload == {"v": 1}


def test_a_batch_answers_per_event_including_repeats_inside_it(pool: ConnectionPool[Any]) -> None:
    store = EventStore(pool)
    stream = fresh_id("stream")
    a, b = uuid.uuid4(), uuid.uuid4()
    answers = store.append(
        [
            new_event(stream, {"n": 1}, a),
            new_event(stream, {"n": 2}, b),
            new_event(stream, {"n": 1}, a),
            new_event(stream, {"n": 9}, b),
        ]
    )

    assert [x.status for x in answers] == [
        AppendStatus.APPENDED,
        AppendStatus.APPENDED,
        AppendStatus.DUPLICATE,
        AppendStatus.CONFLICT,
    ]
    assert answers[0].position < answers[1].position
    assert answers[2].position == answers[0].position
    assert answers[3].position == answers[1].position
    assert [e.payload for e in store.read_stream(stream)] == [{"n": 1}, {"n": 2}]


def test_appends_are_planned_afresh_and_never_kept_as_a_prepared_statement(
    pool: ConnectionPool[Any],
) -> None:
    # psycopg prepares a statement run five times, and PostgreSQL may then keep one generic
    # plan for it: one chosen while the log was small scans the whole table for the stored
    # ids, and every append would cost more the longer the log grows.
    stream = fresh_id("stream")
    stored = new_event(stream, {"n": "stored"})
    with pool.connection() as conn:
        conn.autocommit = True
        for n in range(8):
            answers = append_events(conn, [stored, new_event(stream, {"n": n})])
        prepared = conn.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%INSERT INTO events%"],
        ).fetchone()
    assert [a.status for a in answers] == [AppendStatus.DUPLICATE, AppendStatus.APPENDED]
    assert prepared == (0,)


def test_many_threads_appending_the_same_event_store_it_exactly_once(
    pool: ConnectionPool[Any],
) -> None:
    store = EventStore(pool)
    stream, event_id = fresh_id("stream"), uuid.uuid4()
    barrier = threading.Barrier(12)
    statuses: list[AppendStatus] = []
    lock = threading.Lock()

    def post() -> None:
        barrier.wait()
        [answer] = store.append([new_event(stream, {"same": True}, event_id)])
        with lock:
            statuses.append(answer.status)

    threads = [threading.Thread(target=post) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses.count(AppendStatus.APPENDED) == 1
    assert statuses.count(AppendStatus.DUPLICATE) == 11
    assert len(store.read_stream(stream)) == 1


def test_read_all_returns_everything_in_commit_safe_order_in_pages(
    fresh_pool: ConnectionPool[Any],
) -> None:
    store = EventStore(fresh_pool)
    for n in range(25):
        store.append([new_event("s", {"n": n}), new_event("t", {"n": n})])

    events = read_everything(store)

    assert len(events) == 50
    keys = [(e.transaction_id, e.position) for e in events]
    assert keys == sorted(keys)
    assert len(set(keys)) == 50


def test_a_slow_writer_committing_a_lower_position_later_is_not_skipped(
    fresh_database_url: str, fresh_pool: ConnectionPool[Any]
) -> None:
    store = EventStore(fresh_pool)
    slow = psycopg.connect(fresh_database_url)
    try:
        # The slow writer takes its position first and keeps its transaction open...
        [early] = append_events(slow, [new_event("slow", {"n": 1})])
        # ...while a fast writer commits a later position.
        [late] = store.append([new_event("fast", {"n": 2})])
        assert early.position < late.position

        seen_while_open = store.read_all(START, limit=100)
        # The fence holds back everything the open transaction might still precede.
        assert early.position not in [e.position for e in seen_while_open]
        checkpoint = seen_while_open[-1].checkpoint if seen_while_open else START

        slow.commit()
    finally:
        slow.close()

    after: list[StoredEvent] = []
    deadline = time.monotonic() + 10
    while len(seen_while_open) + len(after) < 2 and time.monotonic() < deadline:
        after.extend(store.read_all(after[-1].checkpoint if after else checkpoint, limit=100))
        time.sleep(0.02)
    positions = [e.position for e in seen_while_open + after]
    assert sorted(positions) == sorted([early.position, late.position])
    assert len(positions) == len(set(positions))


def test_a_rolled_back_append_leaves_no_event_and_does_not_block_readers(
    fresh_database_url: str, fresh_pool: ConnectionPool[Any]
) -> None:
    store = EventStore(fresh_pool)
    with psycopg.connect(fresh_database_url) as aborted:
        append_events(aborted, [new_event("gone", {"n": 1})])
        aborted.rollback()
    [kept] = store.append([new_event("kept", {"n": 2})])

    assert [e.position for e in read_everything(store)] == [kept.position]


def test_checkpoints_order_by_transaction_then_position() -> None:
    assert Checkpoint(transaction_id=5, position=100) < Checkpoint(transaction_id=6, position=1)
    assert Checkpoint(transaction_id=5, position=1) < Checkpoint(transaction_id=5, position=2)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET payload = '{}'::jsonb",
        "DELETE FROM events",
        "TRUNCATE events",
        "UPDATE events SET payload = '{}'::jsonb WHERE false",
    ],
)
def test_the_event_table_refuses_every_change(
    fresh_database_url: str, fresh_pool: ConnectionPool[Any], statement: str
) -> None:
    store = EventStore(fresh_pool)
    store.append([new_event("s", {"n": 1})])

    with (
        psycopg.connect(fresh_database_url) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"),
    ):
        conn.execute(statement)

    assert [e.payload for e in read_everything(store)] == [{"n": 1}]


def test_read_after_through_a_caller_connection_sees_the_same_events(
    fresh_database_url: str, fresh_pool: ConnectionPool[Any]
) -> None:
    store = EventStore(fresh_pool)
    store.append([new_event("s", {"n": n}) for n in range(3)])
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        # The fence is cluster-wide: another test's open transaction may hold it back briefly.
        deadline = time.monotonic() + 10
        while not (events := read_after(conn, START, limit=10)) and time.monotonic() < deadline:
            time.sleep(0.02)
    assert [e.payload["n"] for e in events] == [0, 1, 2]
    assert store.head() == events[-1].position
