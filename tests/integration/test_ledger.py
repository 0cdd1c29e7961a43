"""The audit ledger: an honest log verifies; every kind of tampering is caught where it
happened. The tests tamper as an attacker with database access would: the append-only
trigger disabled, rows changed, removed, reordered, and the chain recomputed."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from commands.ingest import ingest
from commands.mapping import create_mapping
from domain.ledger import read_checkpoints, sign, write_checkpoints
from domain.rules import TimeRules
from eventstore import EventStore
from projections.ledger import LedgerProjection, verify
from projections.runtime import catch_up, ensure_checkpoints
from queries.ledger import checkpoints
from tests.databases import Databases

KEY = b"the server's ledger key"
NOW = datetime(2026, 5, 1, tzinfo=UTC)
EVERY = 50

UNGUARDED = "ALTER TABLE events DISABLE TRIGGER events_append_only"
POSITIONS = "SELECT position FROM events ORDER BY transaction_id, position"


def write_log(url: str) -> None:
    """300 readings in batches of 20, and a mapping between every batch."""
    with ConnectionPool(url, min_size=1, max_size=2, open=True) as pool:
        store, clock = EventStore(pool), lambda: NOW
        for batch in range(15):
            bodies = [
                {
                    "meterId": f"M{n % 3}",
                    "kwhConsumedAc": n / 7,
                    "voltage": 230.0,
                    "timestamp": (NOW - timedelta(minutes=batch * 20 + n)).isoformat(),
                }
                for n in range(20)
            ]
            ingest(bodies, store=store, clock=clock, rules=TimeRules(), metadata={"b": batch})
            mapping = {
                "vehicleId": f"V{batch % 2}",
                "meterId": f"M{batch % 3}",
                "effectiveFrom": (NOW - timedelta(hours=30 - batch)).isoformat(),
            }
            create_mapping(mapping, store=store, clock=clock, rules=TimeRules(), metadata={})


def chain(url: str, key: bytes = KEY, batch_size: int = 37) -> None:
    ledger = LedgerProjection(key, every=EVERY)
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_checkpoints(conn, [ledger])
        while catch_up(conn, ledger, batch_size) or not caught_up(conn):
            pass


def caught_up(conn: psycopg.Connection[Any]) -> bool:
    [(entries,)] = conn.execute("SELECT count(*) FROM ledger_entries").fetchall()
    [(events,)] = conn.execute("SELECT count(*) FROM events").fetchall()
    return bool(entries == events)


@pytest.fixture(scope="module")
def chained(databases: Databases) -> str:
    """A log of 315 events, fully chained: each test tampers with a copy of it."""
    url = databases.create()
    write_log(url)
    chain(url)
    return url


@pytest.fixture
def copy(databases: Databases, chained: str) -> str:
    return databases.clone(chained)


def check(url: str, key: bytes = KEY, exported: list[Any] | None = None) -> Any:
    with (
        psycopg.connect(url, autocommit=True) as log_conn,
        psycopg.connect(url, autocommit=True) as ledger_conn,
    ):
        return verify(log_conn, ledger_conn, key, checkpoints(ledger_conn), exported or [])


def positions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute(POSITIONS)]


@pytest.fixture
def attacker(copy: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(copy, autocommit=True) as conn:
        conn.execute(UNGUARDED)
        yield conn


def test_an_honest_log_verifies_with_every_event_chained_and_checkpoints_signed(
    copy: str,
) -> None:
    result = check(copy)
    assert result.ok, result.mismatch
    assert result.events == result.chained == 315
    with psycopg.connect(copy) as conn:
        signed = checkpoints(conn)
    # Every 50 events, and once at the end of the first batch (no checkpoint was yet
    # older than a minute, so the time rule fired only for the very first batch).
    assert [c.seq for c in signed if c.seq % EVERY == 0] == list(range(EVERY, 315, EVERY))
    assert result.checkpoints == len(signed)
    for c in signed:
        assert c.signature == sign(KEY, c.seq, c.position, c.chain_hash)


def test_the_chain_does_not_depend_on_how_the_log_was_cut_into_batches(
    databases: Databases, chained: str
) -> None:
    again = databases.clone(chained)
    with psycopg.connect(again, autocommit=True) as conn:
        conn.execute("TRUNCATE ledger_entries, ledger_checkpoints")
        conn.execute("UPDATE projection_checkpoints SET transaction_id = '0', position = 0")
    chain(again, batch_size=500)
    query = "SELECT seq, position, chain_hash FROM ledger_entries ORDER BY seq"
    with psycopg.connect(chained) as a, psycopg.connect(again) as b:
        assert a.execute(query).fetchall() == b.execute(query).fetchall()


def test_a_flipped_byte_in_a_payload_is_found_at_its_position(
    copy: str, attacker: psycopg.Connection[Any]
) -> None:
    target = positions(copy)[123]
    attacker.execute(
        "UPDATE events SET payload = jsonb_set(payload, '{voltage}', '231') WHERE position = %s",
        [target],
    )
    mismatch = check(copy).mismatch
    assert (mismatch.kind, mismatch.position, mismatch.seq) == ("content", target, 124)


def test_a_deleted_event_is_found_at_its_position(
    copy: str, attacker: psycopg.Connection[Any]
) -> None:
    target = positions(copy)[200]
    attacker.execute("DELETE FROM events WHERE position = %s", [target])
    mismatch = check(copy).mismatch
    assert (mismatch.kind, mismatch.position) == ("order", target)


def test_two_events_swapped_in_order_are_found_where_the_order_breaks(
    copy: str, attacker: psycopg.Connection[Any]
) -> None:
    order = positions(copy)
    first, second = order[40], order[90]
    attacker.execute(
        """
        UPDATE events e SET transaction_id = o.transaction_id
        FROM events o
        WHERE (e.position, o.position) IN ((%(a)s, %(b)s), (%(b)s, %(a)s))
        """,
        {"a": first, "b": second},
    )
    assert positions(copy) != order  # the commit-safe order really changed
    mismatch = check(copy).mismatch
    assert mismatch.kind == "order"
    assert mismatch.position == min(
        p for p, q in zip(positions(copy), order, strict=True) if p != q
    )


def test_two_events_swapped_in_content_are_found_at_the_first_of_them(
    copy: str, attacker: psycopg.Connection[Any]
) -> None:
    order = positions(copy)
    first, second = order[60], order[61]
    attacker.execute(
        """
        UPDATE events e SET payload = o.payload
        FROM events o
        WHERE (e.position, o.position) IN ((%(a)s, %(b)s), (%(b)s, %(a)s))
        """,
        {"a": first, "b": second},
    )
    mismatch = check(copy).mismatch
    assert (mismatch.kind, mismatch.position) == ("content", first)


def test_a_truncated_tail_is_found_where_the_log_now_ends(
    copy: str, attacker: psycopg.Connection[Any]
) -> None:
    order = positions(copy)
    attacker.execute("DELETE FROM events WHERE position >= %s", [order[250]])
    mismatch = check(copy).mismatch
    assert (mismatch.kind, mismatch.position, mismatch.seq) == ("missing", order[250], 251)


def test_a_log_rewritten_and_rehashed_without_the_key_fails_its_signatures(
    copy: str, attacker: psycopg.Connection[Any]
) -> None:
    order = positions(copy)
    target = order[170]
    attacker.execute(
        "UPDATE events SET payload = jsonb_set(payload, '{kwhConsumedAc}', '0')"
        " WHERE position = %s",
        [target],
    )
    # The attacker keeps the genuine, signed ledger up to the event they changed and
    # recomputes the rest, signing it with a key of their own.
    attacker.execute("DELETE FROM ledger_entries WHERE seq > 170")
    attacker.execute("DELETE FROM ledger_checkpoints WHERE seq > 170")
    attacker.execute(
        "UPDATE projection_checkpoints SET transaction_id = e.transaction_id,"
        " position = e.position FROM events e WHERE e.position = %s",
        [order[169]],
    )
    chain(copy, key=b"not the server's key")

    mismatch = check(copy).mismatch
    assert mismatch.kind == "signature"
    with psycopg.connect(copy) as conn:
        signed = checkpoints(conn)
    # Reported at the first checkpoint after the change, naming the interval since the
    # last checkpoint that holds: the changed event lies inside it.
    first_forged = min(c.seq for c in signed if c.seq > 170)
    last_genuine = max(c.seq for c in signed if c.seq <= 170)
    assert mismatch.seq == first_forged
    assert mismatch.position == order[first_forged - 1]
    assert f"between positions {order[last_genuine - 1]} (exclusive)" in mismatch.detail
    assert order.index(order[last_genuine - 1]) < 170 < order.index(mismatch.position) + 1


def test_a_whole_ledger_rehashed_without_the_key_fails_at_its_first_checkpoint(
    copy: str, attacker: psycopg.Connection[Any]
) -> None:
    attacker.execute("TRUNCATE ledger_entries, ledger_checkpoints")
    attacker.execute("UPDATE projection_checkpoints SET transaction_id = '0', position = 0")
    chain(copy, key=b"not the server's key")
    assert check(copy, key=b"not the server's key").ok  # consistent, but not ours
    mismatch = check(copy).mismatch
    with psycopg.connect(copy) as conn:
        first = checkpoints(conn)[0]
    assert (mismatch.kind, mismatch.seq) == ("signature", first.seq)


def test_exported_checkpoints_catch_a_log_and_ledger_truncated_together(
    copy: str, attacker: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(copy) as conn:
        file = io.StringIO()
        write_checkpoints(checkpoints(conn), file)
    kept_outside = list(read_checkpoints(file.getvalue().splitlines()))
    order = positions(copy)
    # Events, entries and checkpoints from the 181st event on vanish together.
    attacker.execute("DELETE FROM events WHERE position >= %s", [order[180]])
    attacker.execute("DELETE FROM ledger_entries WHERE seq > 180")
    attacker.execute("DELETE FROM ledger_checkpoints WHERE seq > 180")

    assert check(copy).ok  # the database alone looks consistent
    mismatch = check(copy, exported=kept_outside).mismatch
    assert mismatch.kind == "missing"
    assert mismatch.seq == 200 and mismatch.position == order[199]


def test_an_exported_checkpoint_file_round_trips() -> None:
    digest = hashlib.sha256(b"x").digest()
    file = io.StringIO()
    write_checkpoints(
        [
            checkpoint := next(
                read_checkpoints(
                    [
                        '{"seq": 5, "transactionId": 9, "position": 12, "chainHash": "'
                        + digest.hex()
                        + '", "signature": "00ff", "keyId": "k"}'
                    ]
                )
            )
        ],
        file,
    )
    assert list(read_checkpoints(file.getvalue().splitlines())) == [checkpoint]
