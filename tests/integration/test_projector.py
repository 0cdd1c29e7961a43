"""The projector runtime on a real PostgreSQL: late readings, open and aborted writers,
a second projector, wake-up by NOTIFY, and errors that must not end a projection."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from commands.ingest import ingest
from commands.outcomes import Status
from domain.rules import TimeRules
from eventstore import Appended, EventStore, NewEvent
from eventstore.store import append_events
from projections import meter_live
from projections.catalogue import ALL
from projections.fleet_efficiency import FleetEfficiencyRefresh
from projections.runtime import (
    Batch,
    Projection,
    Projector,
    ensure_checkpoints,
    run_batch,
    run_periodic,
)
from tests.ids import fresh_id
from tests.projection_runs import project_through, wait_caught_up

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
RULES = TimeRules()

LIVE_VEHICLE = """
SELECT kwh_delivered_dc, battery_temp, recorded_at FROM vehicle_live WHERE vehicle_id = %(id)s
"""
VEHICLE_HISTORY = """
SELECT recorded_at, kwh_delivered_dc FROM vehicle_history WHERE vehicle_id = %(id)s
ORDER BY recorded_at
"""
VEHICLE_HOURLY = """
SELECT hour, kwh_delivered_dc, battery_temp_sum, readings FROM vehicle_hourly
WHERE vehicle_id = %(id)s ORDER BY hour
"""
COMMITTED_READINGS = """
SELECT position FROM events
WHERE event_type = 'MeterReadingRecorded' AND payload->>'meterId' LIKE %(prefix)s
"""
HISTORY_POSITIONS = "SELECT position FROM meter_history WHERE meter_id LIKE %(prefix)s"
HOURLY_COUNT = "SELECT coalesce(sum(readings), 0) FROM meter_hourly WHERE meter_id LIKE %(prefix)s"
LIVE_POSITIONS = "SELECT meter_id, position FROM meter_live WHERE meter_id LIKE %(prefix)s"
LATEST_PER_METER = """
SELECT DISTINCT ON (payload->>'meterId') payload->>'meterId', position FROM events
WHERE event_type = 'MeterReadingRecorded' AND payload->>'meterId' LIKE %(prefix)s
ORDER BY payload->>'meterId', (payload->>'timestamp')::timestamptz DESC
"""
LOCK_CHECKPOINT_ROW = "SELECT 1 FROM projection_checkpoints WHERE name = %(name)s FOR UPDATE"
LISTENING = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND query = 'LISTEN energy_events'
"""


def vehicle_reading(vehicle_id: str, at: datetime, kwh: float, temp: float) -> dict[str, Any]:
    return {
        "vehicleId": vehicle_id,
        "soc": 50,
        "kwhDeliveredDc": kwh,
        "batteryTemp": temp,
        "timestamp": at.isoformat(),
    }


def meter_reading(meter_id: str, at: datetime, kwh: float = 1.0) -> dict[str, Any]:
    return {
        "meterId": meter_id,
        "kwhConsumedAc": kwh,
        "voltage": 230.0,
        "timestamp": at.isoformat(),
    }


def record(store: Any, bodies: Sequence[dict[str, Any]]) -> int:
    """Ingest ``bodies`` through the command handler; the highest position stored."""
    outcomes = ingest(bodies, store=store, clock=lambda: NOW, rules=RULES, metadata={})
    assert all(o.status is Status.ACCEPTED for o in outcomes), outcomes
    return max(o.position or 0 for o in outcomes)


@contextmanager
def running(url: str, projections: Sequence[Projection] = ALL, **options: Any) -> Iterator[None]:
    """A ``Projector`` running in the background for the length of the block."""
    stop = threading.Event()
    projector = Projector(lambda: psycopg.connect(url), projections, **options)
    thread = threading.Thread(target=projector.run, args=(stop,))
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the projector did not stop"


def test_a_late_reading_leaves_the_live_row_and_still_counts_in_history_and_rollups(
    pool: ConnectionPool[Any], database_url: str
) -> None:
    vehicle = fresh_id("V")
    store = EventStore(pool)
    newer, older = NOW - timedelta(minutes=5), NOW - timedelta(hours=2, minutes=30)
    record(store, [vehicle_reading(vehicle, newer, kwh=2.0, temp=30.0)])
    last = record(store, [vehicle_reading(vehicle, older, kwh=5.0, temp=20.0)])

    with psycopg.connect(database_url, autocommit=True) as conn:
        project_through(conn, last)
        live = conn.execute(LIVE_VEHICLE, {"id": vehicle}).fetchall()
        history = conn.execute(VEHICLE_HISTORY, {"id": vehicle}).fetchall()
        hourly = conn.execute(VEHICLE_HOURLY, {"id": vehicle}).fetchall()

    assert live == [(2.0, 30.0, newer)]
    assert history == [(older, 5.0), (newer, 2.0)]
    assert [(hour, float(kwh), float(temp), n) for hour, kwh, temp, n in hourly] == [
        (older.replace(minute=0), 5.0, 20.0, 1),
        (newer.replace(minute=0), 2.0, 30.0, 1),
    ]


class HeldOpen:
    """An ``Appender`` that appends on a connection of its own and keeps the transaction
    open for ``hold`` seconds before it commits, or rolls it back."""

    def __init__(self, url: str, hold: float, commit: bool) -> None:
        self.url, self.hold, self.commit = url, hold, commit

    def append(self, events: Sequence[NewEvent]) -> list[Appended]:
        with psycopg.connect(self.url) as conn:
            answers = append_events(conn, events)
            time.sleep(self.hold)
            if self.commit:
                conn.commit()
            else:
                conn.rollback()
        return answers


def test_the_projector_skips_nothing_while_writers_hold_transactions_open_or_roll_back(
    fresh_database_url: str, fresh_pool: ConnectionPool[Any]
) -> None:
    url, prefix = fresh_database_url, fresh_id("M")
    store = EventStore(fresh_pool)
    rng = random.Random(7)

    def fast_writer(n: int) -> None:
        for i in range(40):
            at = NOW - timedelta(minutes=rng.randrange(600), seconds=i)
            record(store, [meter_reading(f"{prefix}-fast{n}", at, kwh=rng.random())])
            time.sleep(rng.uniform(0, 0.02))

    def slow_writer(n: int, commit: bool) -> None:
        for i in range(3):
            at = NOW - timedelta(minutes=rng.randrange(600), seconds=i)
            body = meter_reading(f"{prefix}-slow{n}", at, kwh=rng.random())
            # The transaction takes its positions now and commits them 1-2 s later, after
            # the fast writers have committed many higher positions.
            ingest(
                [body],
                store=HeldOpen(url, rng.uniform(1.0, 2.0), commit),
                clock=lambda: NOW,
                rules=RULES,
                metadata={},
            )

    writers = [threading.Thread(target=fast_writer, args=(n,)) for n in range(6)]
    writers += [threading.Thread(target=slow_writer, args=(n, n != 0)) for n in range(3)]
    with running(url, batch_size=25, poll_interval=0.05, linger=0.0):
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join()
        with psycopg.connect(url, autocommit=True) as conn:
            wait_caught_up(conn)

    like = {"prefix": prefix + "%"}
    with psycopg.connect(url, autocommit=True) as conn:
        committed = {row[0] for row in conn.execute(COMMITTED_READINGS, like)}
        history = [row[0] for row in conn.execute(HISTORY_POSITIONS, like)]
        [(hourly,)] = conn.execute(HOURLY_COUNT, like).fetchall()
        live = dict(conn.execute(LIVE_POSITIONS, like).fetchall())
        latest = dict(conn.execute(LATEST_PER_METER, like).fetchall())

    assert len(committed) == 6 * 40 + 2 * 3  # the rolled-back writer left nothing
    assert sorted(history) == sorted(committed)
    assert hourly == len(committed)
    assert live == latest


def test_a_projection_held_by_another_projector_is_skipped_not_applied_twice(
    fresh_database_url: str, fresh_pool: ConnectionPool[Any]
) -> None:
    url, meter = fresh_database_url, fresh_id("M")
    record(EventStore(fresh_pool), [meter_reading(meter, NOW - timedelta(minutes=1))])
    with (
        psycopg.connect(url, autocommit=True) as other,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        ensure_checkpoints(conn, [meter_live.PROJECTION])
        with other.transaction():
            other.execute(LOCK_CHECKPOINT_ROW, {"name": "meter_live"})
            assert run_batch(conn, meter_live.PROJECTION, 100) is None
        # Another test's open transaction anywhere on the server may hold the fence a moment.
        deadline = time.monotonic() + 10
        while (applied := run_batch(conn, meter_live.PROJECTION, 100)) == 0:
            assert time.monotonic() < deadline, "the event never came through the fence"
            time.sleep(0.02)
        assert applied == 1
        assert run_batch(conn, meter_live.PROJECTION, 100) == 0


def test_a_batch_cannot_run_inside_a_transaction_the_caller_left_open(
    fresh_database_url: str,
) -> None:
    with psycopg.connect(fresh_database_url) as conn:
        ensure_checkpoints(conn, [meter_live.PROJECTION])
        conn.execute("SELECT 1")  # opens an implicit transaction
        with pytest.raises(RuntimeError, match="no transaction open"):
            run_batch(conn, meter_live.PROJECTION, 100)


def test_a_commit_wakes_the_projector_long_before_its_poll(
    fresh_database_url: str, fresh_pool: ConnectionPool[Any]
) -> None:
    url, vehicle = fresh_database_url, fresh_id("V")
    at = NOW - timedelta(minutes=1)
    with (
        running(url, poll_interval=120.0, linger=0.0),
        psycopg.connect(url, autocommit=True) as conn,
    ):
        deadline = time.monotonic() + 10
        while conn.execute(LISTENING).fetchone() != (1,):
            assert time.monotonic() < deadline, "the projector never listened"
            time.sleep(0.01)
        time.sleep(0.2)  # every projection thread has run its first, empty round
        record(EventStore(fresh_pool), [vehicle_reading(vehicle, at, kwh=1.0, temp=25.0)])
        deadline = time.monotonic() + 10
        while not conn.execute(LIVE_VEHICLE, {"id": vehicle}).fetchall():
            assert time.monotonic() < deadline, "not woken: only the 120 s poll would find it"
            time.sleep(0.01)


def test_an_event_held_back_by_a_silent_transaction_is_applied_soon_after_it_ends(
    fresh_database_url: str, fresh_pool: ConnectionPool[Any]
) -> None:
    url, vehicle = fresh_database_url, fresh_id("V")
    with (
        running(url, poll_interval=120.0, linger=0.0),
        psycopg.connect(url, autocommit=True) as conn,
        psycopg.connect(url) as holder,
    ):
        deadline = time.monotonic() + 10
        while conn.execute(LISTENING).fetchone() != (1,):
            assert time.monotonic() < deadline, "the projector never listened"
            time.sleep(0.01)
        # A transaction with an id, older than the reading's, that writes no event: its
        # end notifies nobody, yet until it ends the fence holds the reading back.
        holder.execute("SELECT pg_current_xact_id()")
        at = NOW - timedelta(minutes=1)
        record(EventStore(fresh_pool), [vehicle_reading(vehicle, at, kwh=1.0, temp=25.0)])
        time.sleep(0.5)  # notified, but the reading is behind the fence
        assert not conn.execute(LIVE_VEHICLE, {"id": vehicle}).fetchall()
        holder.commit()
        ended = time.monotonic()
        while not conn.execute(LIVE_VEHICLE, {"id": vehicle}).fetchall():
            assert time.monotonic() - ended < 5, "only the 120 s poll would have found it"
            time.sleep(0.01)


class FailsFirst:
    """A projection whose first ``failures`` batches raise, as a bug or bad data would."""

    def __init__(self, inner: Projection, failures: int) -> None:
        self.name, self._inner, self.failures = inner.name, inner, failures

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        self._inner.prepare(conn)

    def apply(self, conn: psycopg.Connection[Any], batch: Batch) -> None:
        self._inner.apply(conn, batch)
        if self.failures:
            self.failures -= 1
            raise RuntimeError("batch failed after applying part of it")


def test_a_failing_batch_is_rolled_back_logged_and_retried_without_ending_the_projection(
    fresh_database_url: str, fresh_pool: ConnectionPool[Any], caplog: pytest.LogCaptureFixture
) -> None:
    url, meter = fresh_database_url, fresh_id("M")
    record(
        EventStore(fresh_pool), [meter_reading(meter, NOW - timedelta(minutes=m)) for m in (1, 2)]
    )
    flaky = FailsFirst(meter_live.PROJECTION, failures=2)
    with (
        caplog.at_level(logging.ERROR),
        running(url, [flaky], poll_interval=0.02),
        psycopg.connect(url, autocommit=True) as conn,
    ):
        deadline = time.monotonic() + 10
        while not conn.execute(LIVE_POSITIONS, {"prefix": meter}).fetchall():
            assert time.monotonic() < deadline, "the projection never recovered"
            time.sleep(0.02)
    assert flaky.failures == 0
    assert sum("meter_live: batch failed" in r.getMessage() for r in caplog.records) == 2


def test_two_projectors_racing_over_one_log_apply_every_event_exactly_once(
    fresh_database_url: str, fresh_pool: ConnectionPool[Any]
) -> None:
    url, prefix = fresh_database_url, fresh_id("M")
    store = EventStore(fresh_pool)
    start = NOW - timedelta(days=1)
    for chunk in range(10):
        record(
            store,
            [
                meter_reading(f"{prefix}-{n}", start + timedelta(minutes=chunk * 30 + m))
                for m in range(30)
                for n in range(10)
            ],
        )
    options = {"batch_size": 20, "poll_interval": 0.01, "linger": 0.0}
    like = {"prefix": prefix + "%"}
    with (
        running(url, **options),
        running(url, **options),
        psycopg.connect(url, autocommit=True) as conn,
    ):
        wait_caught_up(conn)
        [(hourly,)] = conn.execute(HOURLY_COUNT, like).fetchall()
        history = conn.execute(HISTORY_POSITIONS, like).fetchall()
    assert hourly == len(history) == 3000


FLEET_ROW = """
SELECT window_end, vehicle_readings, dc_kwh FROM fleet_efficiency WHERE vehicle_id = %(id)s
"""
TAKE_JOB_LOCK = "SELECT pg_advisory_xact_lock(hashtext('energy-job:fleet_efficiency'))"


def test_the_fleet_refresh_runs_periodically_and_in_one_process_at_a_time(
    fresh_database_url: str, fresh_pool: ConnectionPool[Any]
) -> None:
    url, v = fresh_database_url, fresh_id("V")
    at = datetime.now(UTC) - timedelta(minutes=2)
    ingest(
        [vehicle_reading(v, at, kwh=1.5, temp=25.0)],
        store=EventStore(fresh_pool),
        clock=lambda: datetime.now(UTC),
        rules=RULES,
        metadata={},
    )
    job = FleetEfficiencyRefresh(interval=0.05)
    with (
        running(url, periodic=[job], poll_interval=0.05),
        psycopg.connect(url, autocommit=True) as conn,
    ):
        deadline = time.monotonic() + 10
        ends = set()
        while len(ends) < 2:  # refreshed at least twice, each time for a later window
            row = conn.execute(FLEET_ROW, {"id": v}).fetchone()
            if row is not None and row[1] == 1:
                assert row[2] == 1.5
                ends.add(row[0])
            assert time.monotonic() < deadline, "the fleet was not refreshed twice"
            time.sleep(0.02)

    with (
        psycopg.connect(url, autocommit=True) as holder,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        with holder.transaction():
            holder.execute(TAKE_JOB_LOCK)
            assert run_periodic(conn, job) is False
        assert run_periodic(conn, job) is True
