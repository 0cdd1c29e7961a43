"""Driving projections to a known position in tests, and dumping read models to compare."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from commands.ingest import ingest
from commands.mapping import create_mapping
from commands.outcomes import Status
from domain.rules import TimeRules
from eventstore import EventStore
from projections.catalogue import ALL
from projections.runtime import catch_up, ensure_checkpoints, has_reached
from queries.projection_status import statuses

LOG_NOW = datetime(2026, 7, 1, tzinfo=UTC)

READ_MODELS: dict[str, str] = {
    "meter_live": "SELECT meter_id, kwh_consumed_ac, voltage, recorded_at, received_at, position"
    " FROM meter_live ORDER BY meter_id",
    "vehicle_live": "SELECT vehicle_id, soc, kwh_delivered_dc, battery_temp, recorded_at,"
    " received_at, position FROM vehicle_live ORDER BY vehicle_id",
    "meter_history": "SELECT * FROM meter_history ORDER BY meter_id, recorded_at",
    "vehicle_history": "SELECT * FROM vehicle_history ORDER BY vehicle_id, recorded_at",
    "vehicle_meter_map": "SELECT * FROM vehicle_meter_map"
    " ORDER BY vehicle_id, meter_id, valid_from NULLS FIRST",
    "meter_hourly": "SELECT * FROM meter_hourly ORDER BY meter_id, hour",
    "vehicle_hourly": "SELECT * FROM vehicle_hourly ORDER BY vehicle_id, hour",
}


def project_through(conn: psycopg.Connection[Any], position: int, timeout: float = 30.0) -> None:
    """Run every projection until it has applied the event at ``position``.

    The commit-safe fence is cluster-wide, so a transaction open elsewhere on the server can
    hold it back for a moment: keep catching up until the position is reached.
    """
    ensure_checkpoints(conn, ALL)
    deadline = time.monotonic() + timeout
    for projection in ALL:
        while not has_reached(conn, projection.name, position):
            if time.monotonic() > deadline:
                raise AssertionError(f"{projection.name} did not reach position {position}")
            if not catch_up(conn, projection, batch_size=1000):
                time.sleep(0.02)


def wait_caught_up(conn: psycopg.Connection[Any], timeout: float = 60.0) -> None:
    """Wait until every projection has applied every event in the log (someone else runs them)."""
    deadline = time.monotonic() + timeout
    while behind := {
        s.name: s.behind for s in statuses(conn, [p.name for p in ALL]) if not s.caught_up
    }:
        if time.monotonic() > deadline:
            raise AssertionError(f"projections still behind after {timeout} s: {behind}")
        time.sleep(0.05)


def dump(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Every read model's rows in a stable order (projection timestamps left out)."""
    return {name: conn.execute(query).fetchall() for name, query in READ_MODELS.items()}


def write_log(url: str, rng: random.Random) -> None:
    """About 12,000 readings of 30 devices, in batches of the real write path: late and
    out-of-order readings, duplicates, and remappings between the batches."""
    clock = lambda: LOG_NOW  # noqa: E731
    with ConnectionPool(url, min_size=1, max_size=2, open=True) as pool:
        store = EventStore(pool)
        start = LOG_NOW - timedelta(days=3)
        for minute in range(0, 400, 25):
            bodies: list[dict[str, Any]] = []
            for offset in range(minute, minute + 25):
                at = start + timedelta(minutes=offset)
                if rng.random() < 0.1:  # a backlog upload, hours late
                    at -= timedelta(hours=rng.randrange(1, 30), seconds=rng.randrange(1, 60))
                for n in range(15):
                    bodies.append(
                        {
                            "meterId": f"M{n}",
                            "kwhConsumedAc": round(rng.uniform(0, 0.2), 4),
                            "voltage": 230.0,
                            "timestamp": at.isoformat(),
                        }
                    )
                    bodies.append(
                        {
                            "vehicleId": f"V{n}",
                            "soc": 50,
                            "kwhDeliveredDc": round(rng.uniform(0, 0.18), 4),
                            "batteryTemp": round(rng.uniform(15, 40), 1),
                            "timestamp": at.isoformat(),
                        }
                    )
            bodies += rng.sample(bodies, 20)  # sent twice
            outcomes = ingest(bodies, store=store, clock=clock, rules=TimeRules(), metadata={})
            assert {o.status for o in outcomes} <= {Status.ACCEPTED, Status.DUPLICATE}
            vehicle, meter = rng.randrange(15), rng.randrange(15)
            mapping = {
                "vehicleId": f"V{vehicle}",
                "meterId": f"M{meter}",
                "effectiveFrom": (start + timedelta(minutes=minute)).isoformat(),
            }
            outcome, _ = create_mapping(
                mapping, store=store, clock=clock, rules=TimeRules(), metadata={}
            )
            assert outcome.status is Status.ACCEPTED
