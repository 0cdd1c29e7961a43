"""Group commit on a real PostgreSQL: callers share transactions, each gets its own answers
only once committed, idempotency holds across callers, and a bad caller fails alone."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from eventstore import AppendStatus, StoreUnavailable
from eventstore.group_commit import GroupCommitStore
from tests.ids import fresh_id
from tests.integration.test_eventstore import new_event

TRANSACTIONS = """
SELECT count(DISTINCT transaction_id), count(*) FROM events WHERE stream_id LIKE %(prefix)s
"""


@pytest.fixture
def store(pool: ConnectionPool[Any]) -> Iterator[GroupCommitStore]:
    grouped = GroupCommitStore(pool, flushers=2)
    yield grouped
    grouped.close()


def concurrently(count: int, call: Any) -> list[Any]:
    barrier, results, lock = threading.Barrier(count), [None] * count, threading.Lock()

    def run(n: int) -> None:
        barrier.wait()
        outcome: Any
        try:
            outcome = call(n)
        except Exception as exc:
            outcome = exc
        with lock:
            results[n] = outcome

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_callers_share_commits_and_each_gets_its_own_answers(
    store: GroupCommitStore, database_url: str
) -> None:
    prefix = fresh_id("gc")
    answers = concurrently(
        48,
        lambda n: store.append(
            [new_event(f"{prefix}-{n}", {"n": n, "part": part}) for part in range(3)]
        ),
    )
    with psycopg.connect(database_url) as conn:
        [(transactions, stored)] = conn.execute(TRANSACTIONS, {"prefix": prefix + "%"}).fetchall()
        rows = conn.execute(
            "SELECT stream_id, payload, position FROM events WHERE stream_id LIKE %(prefix)s",
            {"prefix": prefix + "%"},
        ).fetchall()
    assert stored == 48 * 3
    assert transactions < 48  # commits were shared
    by_position = {position: (stream, payload) for stream, payload, position in rows}
    for n, mine in enumerate(answers):
        assert [a.status for a in mine] == [AppendStatus.APPENDED] * 3
        assert [by_position[a.position] for a in mine] == [
            (f"{prefix}-{n}", {"n": n, "part": part}) for part in range(3)
        ]
        assert mine[0].position < mine[1].position < mine[2].position


def test_the_same_event_from_many_callers_at_once_is_stored_once(
    store: GroupCommitStore, database_url: str
) -> None:
    stream, event_id = fresh_id("gc"), uuid.uuid4()
    answers = concurrently(24, lambda n: store.append([new_event(stream, {"same": 1}, event_id)]))
    statuses = sorted(a[0].status.value for a in answers)
    assert statuses == ["appended"] + ["duplicate"] * 23
    assert len({a[0].position for a in answers}) == 1
    clash = store.append([new_event(stream, {"same": 2}, event_id)])
    assert clash[0].status is AppendStatus.CONFLICT


def test_a_caller_whose_events_the_database_refuses_fails_alone(
    store: GroupCommitStore, database_url: str
) -> None:
    prefix = fresh_id("gc")

    def call(n: int) -> Any:
        if n == 5:  # a payload no jsonb column can hold
            return store.append([new_event(f"{prefix}-bad", {"text": "\x00"})])
        return store.append([new_event(f"{prefix}-{n}", {"n": n})])

    results = concurrently(16, call)
    assert isinstance(results[5], psycopg.Error)
    assert all(
        isinstance(r, list) and r[0].status is AppendStatus.APPENDED
        for n, r in enumerate(results)
        if n != 5
    )
    with psycopg.connect(database_url) as conn:
        [(_, stored)] = conn.execute(TRANSACTIONS, {"prefix": prefix + "%"}).fetchall()
    assert stored == 15


def test_a_closed_store_refuses_new_appends(pool: ConnectionPool[Any]) -> None:
    store = GroupCommitStore(pool, flushers=1, alone=3)
    store.close()
    stream = fresh_id("gc")
    with pytest.raises(StoreUnavailable):
        store.append([new_event(stream, {"late": True})])
    many = [new_event(stream, {"late": n}) for n in range(3)]  # would commit alone
    with pytest.raises(StoreUnavailable):
        store.append(many)
    with pytest.raises(StoreUnavailable):
        asyncio.run(store.append_async(many))


def test_coroutines_on_one_event_loop_share_commits_and_each_gets_its_own_answers(
    store: GroupCommitStore, database_url: str
) -> None:
    prefix, shared = fresh_id("gc"), uuid.uuid4()

    async def caller(n: int) -> list[Any]:
        mine = [new_event(f"{prefix}-{n}", {"n": n}), new_event(prefix, {"same": 1}, shared)]
        return await store.append_async(mine)

    async def many() -> list[list[Any]]:
        return await asyncio.gather(*(caller(n) for n in range(40)))

    answers = asyncio.run(many())
    with psycopg.connect(database_url) as conn:
        [(transactions, stored)] = conn.execute(TRANSACTIONS, {"prefix": prefix + "%"}).fetchall()
        positions = dict(
            conn.execute(
                "SELECT stream_id, position FROM events WHERE stream_id LIKE %(prefix)s",
                {"prefix": prefix + "-%"},
            ).fetchall()
        )
    assert stored == 40 + 1  # each caller's own event, and the shared one once
    assert transactions < 40  # the loop's callers queued together: commits were shared
    for n, (own, _) in enumerate(answers):
        assert own.status is AppendStatus.APPENDED
        assert own.position == positions[f"{prefix}-{n}"]
    assert sorted(same.status.value for _, same in answers) == ["appended"] + ["duplicate"] * 39
    assert len({same.position for _, same in answers}) == 1


def test_a_coroutine_whose_events_the_database_refuses_gets_the_error(
    store: GroupCommitStore,
) -> None:
    bad = new_event(fresh_id("gc"), {"text": "\x00"})  # a payload no jsonb column can hold
    with pytest.raises(psycopg.Error):
        asyncio.run(store.append_async([bad]))
    # The flusher is still there for the next caller.
    [after] = asyncio.run(store.append_async([new_event(fresh_id("gc"), {"ok": True})]))
    assert after.status is AppendStatus.APPENDED


def test_a_caller_with_many_events_commits_alone_without_waiting_for_a_flusher(
    pool: ConnectionPool[Any],
) -> None:
    # No flusher at all: a caller below ``alone`` waits for one forever; one at or above
    # it is never queued.
    store = GroupCommitStore(pool, flushers=0, alone=10)
    events = [new_event(fresh_id("gc"), {"n": n}) for n in range(10)]
    answers: list[Any] = []
    caller = threading.Thread(target=lambda: answers.extend(store.append(events)), daemon=True)
    caller.start()
    caller.join(timeout=10)
    assert [a.status for a in answers] == [AppendStatus.APPENDED] * 10

    async def again() -> list[Any]:
        return await asyncio.wait_for(store.append_async(events), timeout=10)

    repeated = asyncio.run(again())
    assert [a.status for a in repeated] == [AppendStatus.DUPLICATE] * 10
    assert [a.position for a in repeated] == [a.position for a in answers]

    async def small() -> list[Any]:
        return await asyncio.wait_for(store.append_async(events[:9]), timeout=0.5)

    with pytest.raises(TimeoutError):
        asyncio.run(small())
    store.close()


def test_concurrent_callers_with_many_events_commit_in_transactions_of_their_own(
    pool: ConnectionPool[Any], database_url: str
) -> None:
    store = GroupCommitStore(pool, flushers=1, alone=5)
    prefix = fresh_id("gc")
    answers = concurrently(
        6, lambda n: store.append([new_event(f"{prefix}-{n}", {"part": p}) for p in range(5)])
    )
    store.close()
    with psycopg.connect(database_url) as conn:
        [(transactions, stored)] = conn.execute(TRANSACTIONS, {"prefix": prefix + "%"}).fetchall()
    assert (transactions, stored) == (6, 30)
    for mine in answers:
        assert [a.status for a in mine] == [AppendStatus.APPENDED] * 5
        assert [a.position for a in mine] == sorted(a.position for a in mine)
