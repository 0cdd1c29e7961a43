"""Seeder: fills the event store directly with COPY (no HTTP) with days of fleet history.

Rows are exactly what the API would store for the same readings: the events are the domain's
own classes, encoded by the commands' own ``reading_record`` / ``mapping_record`` (the same
ids and streams as the API's). Posting a seeded reading to the API therefore answers
``duplicate``, never ``conflict``.

Each vehicle/meter pair gets one mapping at the start of the history (the first mapping of a
pair also covers earlier readings, as the API decides). Readings go interval by interval, all
devices of one interval together, committed every ``--chunk`` rows so that no transaction is
long (a long one would hold back commit-safe readers).
"""

from __future__ import annotations

import os
import random
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from typing import Any

import click
import orjson
import psycopg
from psycopg.types.json import Jsonb

from bench.fleet import Fleet
from commands.ingest import reading_record
from commands.mapping import mapping_record
from domain.mappings import VehicleMeterMapped
from domain.readings import MeterReadingRecorded, VehicleReadingRecorded
from eventstore import NewEvent

# Binary COPY: PostgreSQL parses uuids and timestamps no more, ~20 % faster than text here.
COPY_EVENTS = """
COPY events (event_id, stream_id, event_type, schema_version, payload, metadata, received_at)
FROM STDIN (FORMAT BINARY)
"""
COLUMN_TYPES = ["uuid", "text", "text", "int2", "jsonb", "jsonb", "timestamptz"]
RECEIVE_DELAY = timedelta(seconds=2)  # how long after its timestamp a reading arrives


def mapping_events(fleet: Fleet, start: datetime, metadata: dict[str, Any]) -> list[NewEvent]:
    """One mapping per vehicle/meter pair, effective from ``start``."""
    events = []
    for vehicle, meter in fleet.pairs():
        event = VehicleMeterMapped(vehicle_id=vehicle, meter_id=meter, effective_from=start)
        events.append(mapping_record(event, metadata=metadata, received_at=start))
    return events


def reading_events(
    fleet: Fleet,
    first: int,
    last: int,
    metadata: dict[str, Any],
    *,
    meters: Iterable[int] | None = None,
    vehicles: Iterable[int] | None = None,
) -> Iterator[NewEvent]:
    """Readings of the given devices (default all) every interval from ``first`` to ``last``."""
    meter_indexes = list(range(fleet.meters) if meters is None else meters)
    vehicle_indexes = list(range(fleet.vehicles) if vehicles is None else vehicles)
    for at in range(first, last + 1, fleet.interval_s):
        moment = datetime.fromtimestamp(at, UTC)
        received = moment + RECEIVE_DELAY
        for index in meter_indexes:
            kwh, voltage = fleet.meter_values(index, at)
            meter = MeterReadingRecorded(
                meter_id=fleet.meter_ids[index],
                kwh_consumed_ac=kwh,
                voltage=voltage,
                timestamp=moment,
            )
            yield reading_record(meter, metadata=metadata, received_at=received)
        for index in vehicle_indexes:
            soc, kwh, temp = fleet.vehicle_values(index, at)
            vehicle = VehicleReadingRecorded(
                vehicle_id=fleet.vehicle_ids[index],
                soc=soc,
                kwh_delivered_dc=kwh,
                battery_temp=temp,
                timestamp=moment,
            )
            yield reading_record(vehicle, metadata=metadata, received_at=received)


def _constant(data: bytes) -> Callable[[object], bytes]:
    """A ``dumps`` for ``Jsonb`` that hands back ``data``, already serialised."""
    return lambda _: data


def copy_events(conn: psycopg.Connection[Any], events: Iterator[NewEvent], chunk: int) -> int:
    """COPY ``events`` into the table, one transaction per ``chunk`` rows; the count copied."""
    total = 0
    dumped: dict[int, Jsonb] = {}  # the run's few metadata dicts, serialised once each
    while True:
        copied = 0
        with conn.transaction(), conn.cursor().copy(COPY_EVENTS) as copy:
            copy.set_types(COLUMN_TYPES)
            for event in events:
                metadata = dumped.get(id(event.metadata))
                if metadata is None:
                    data = orjson.dumps(event.metadata)
                    metadata = dumped[id(event.metadata)] = Jsonb(None, dumps=_constant(data))
                copy.write_row(
                    (
                        event.event_id,
                        event.stream_id,
                        event.event_type,
                        event.schema_version,
                        Jsonb(event.payload, dumps=orjson.dumps),
                        metadata,
                        event.received_at,
                    )
                )
                copied += 1
                if copied == chunk:
                    break
        total += copied
        if copied < chunk:
            return total


@dataclass(frozen=True)
class Share:
    """One process's part of the work: every ``jobs``-th device from number ``job`` on."""

    dsn: str
    job: int
    jobs: int
    first: int
    last: int
    metadata: dict[str, Any]
    chunk: int


def copy_share(fleet: Fleet, share: Share) -> int:
    """Copy the readings of ``share``'s devices; the count copied."""
    fleet.rng = random.Random(f"seed-job-{share.job}")
    events = reading_events(
        fleet,
        share.first,
        share.last,
        share.metadata,
        meters=range(share.job, fleet.meters, share.jobs),
        vehicles=range(share.job, fleet.vehicles, share.jobs),
    )
    with psycopg.connect(share.dsn) as conn:
        return copy_events(conn, events, share.chunk)


def seed(
    dsn: str,
    *,
    meters: int,
    vehicles: int,
    days: float,
    interval_s: int = 60,
    end: datetime | None = None,
    prefix: str = "",
    chunk: int = 50_000,
    jobs: int = 1,
) -> dict[str, Any]:
    """Seed ``days`` of history ending at ``end`` (default now) in ``jobs`` processes."""
    fleet = Fleet(meters=meters, vehicles=vehicles, prefix=prefix, interval_s=interval_s)
    last = int((end or datetime.now(UTC)).timestamp()) // interval_s * interval_s - interval_s
    first = last - int(days * 86_400) // interval_s * interval_s + interval_s
    metadata = {"requestId": f"seed-{secrets.token_hex(6)}"}
    began = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        mappings = copy_events(
            conn, iter(mapping_events(fleet, datetime.fromtimestamp(first, UTC), metadata)), chunk
        )
    shares = [Share(dsn, job, jobs, first, last, metadata, chunk) for job in range(jobs)]
    if jobs == 1:
        readings = copy_share(fleet, shares[0])
    else:
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            readings = sum(pool.map(copy_share, [fleet] * jobs, shares))
    elapsed = time.perf_counter() - began
    events = mappings + readings
    return {
        "mappings": mappings,
        "readings": readings,
        "events": events,
        "first": datetime.fromtimestamp(first, UTC).isoformat(),
        "last": datetime.fromtimestamp(last, UTC).isoformat(),
        "elapsed_s": round(elapsed, 3),
        "events_per_s": round(events / elapsed, 1) if elapsed else 0.0,
    }


def cli_moment(value: str | None) -> datetime | None:
    """A command-line ISO-8601 date-time, which must carry its offset."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO-8601 date-time: {value!r}") from None
    if moment.tzinfo is None:
        raise click.BadParameter("must carry a UTC offset, e.g. 2026-06-15T12:30:00Z")
    return moment


@click.command()
@click.option("--dsn", required=True, help="PostgreSQL conninfo of a migrated database.")
@click.option("--meters", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--vehicles", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--days", type=click.FloatRange(min=0), default=1.0, show_default=True)
@click.option("--interval-seconds", type=click.IntRange(min=1), default=60, show_default=True)
@click.option(
    "--end", callback=lambda _c, _p, value: cli_moment(value), help="ISO-8601 with offset [now]"
)
@click.option("--prefix", default="", help="Device id prefix.")
@click.option("--chunk", type=click.IntRange(min=1), default=50_000, show_default=True)
@click.option(
    "--jobs", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default="CPU count"
)
def cli(
    dsn: str,
    meters: int,
    vehicles: int,
    days: float,
    interval_seconds: int,
    end: datetime | None,
    prefix: str,
    chunk: int,
    jobs: int,
) -> None:
    """Fill the event store with DAYS of readings of METERS and VEHICLES, straight by COPY."""
    result = seed(
        dsn,
        meters=meters,
        vehicles=vehicles,
        days=days,
        interval_s=interval_seconds,
        end=end,
        prefix=prefix,
        chunk=chunk,
        jobs=jobs,
    )
    click.echo(
        f"{result['events']} events ({result['mappings']} mappings, {result['readings']} readings"
        f" from {result['first']} to {result['last']}) in {result['elapsed_s']} s:"
        f" {result['events_per_s']:.0f} events/s"
    )


if __name__ == "__main__":
    cli()
