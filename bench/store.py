"""The event store's own ceiling: batches of readings appended straight through the store.

``python -m bench.store`` builds ``--batches`` batches of ``--batch-size`` readings the way
the API does (``commands.ingest.decide``: validated, ids derived, encoded) before the clock
starts, then appends them with ``eventstore.store.append_events`` in autocommit, one
statement per batch as the group commit sends it, from ``--sessions`` threads with a
connection each: no HTTP, no JSON body, no per-item answers. It reports events/s and what
each event cost the database's backends and this process in CPU, and checks that the log
holds every event exactly once. ``bench.run``'s batch step (the same batches over HTTP,
with the load generator on the same cores) is set against it: the store's figure is what
PostgreSQL and the append statement can take on the machine.

Results go to ``bench/results/store.json`` and ``.md``.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import psycopg
from psycopg.conninfo import conninfo_to_dict

from bench.fleet import Fleet
from bench.harness import (
    ADMIN_DSN,
    RESULTS,
    Echo,
    events_in,
    fresh_database,
    host_facts,
    write_results,
)
from bench.loadgen import per_second
from bench.run import cpu_seconds
from commands.ingest import decide
from domain.rules import TimeRules
from eventstore import AppendStatus, NewEvent
from eventstore.store import append_events

METADATA = {"requestId": "bench-store", "credentialId": None}


def reading_batches(count: int, size: int, devices: int) -> list[list[NewEvent]]:
    """``count`` batches of ``size`` readings of a fleet of ``devices``, a minute apart per
    device, ending before now, judged and encoded as the API does."""
    fleet = Fleet(meters=devices // 2, vehicles=devices - devices // 2, prefix="bench-store-")
    now = datetime.now(UTC)
    minutes = -(-count * size // devices)  # whole rounds of the fleet, rounded up
    at = int(now.timestamp()) // 60 * 60 - minutes * 60
    rules = TimeRules()
    made, device = [], 0
    for _ in range(count):
        items: list[object] = []
        while len(items) < size:
            if device == fleet.devices:
                device, at = 0, at + 60
            if device < fleet.meters:
                items.append(fleet.meter_reading(device, at))
            else:
                items.append(fleet.vehicle_reading(device - fleet.meters, at))
            device += 1
        decided = decide(items, clock=lambda: now, rules=rules, metadata=METADATA)
        assert len(decided.events) == size, "every generated reading is valid"
        made.append(decided.events)
    return made


def append_all(
    url: str, work: list[list[NewEvent]], sessions: int
) -> tuple[float, int, dict[str, float]]:
    """Append every batch of ``work`` from ``sessions`` threads: the seconds it took, the
    events appended, and the CPU seconds used meanwhile by this process and the database's
    backends (read while the sessions are still open)."""
    pending = list(reversed(work))
    appended = [0] * sessions
    lock = threading.Lock()
    dbname = str(conninfo_to_dict(url).get("dbname", ""))
    conns = [psycopg.connect(url, autocommit=True) for _ in range(sessions)]

    def run(index: int) -> None:
        while True:
            with lock:
                if not pending:
                    return
                batch = pending.pop()
            answers = append_events(conns[index], batch)
            appended[index] += sum(a.status is AppendStatus.APPENDED for a in answers)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(sessions)]
    try:
        before = cpu_seconds(os.getpid(), dbname)
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - began
        after = cpu_seconds(os.getpid(), dbname)
    finally:
        for conn in conns:
            conn.close()
    used = {"database": after["database"] - before["database"]}
    used["python"] = after["server"] - before["server"]
    return seconds, sum(appended), used


def run_benchmark(
    url: str, *, batches_of: int, size: int, sessions: int, devices: int, echo: Echo
) -> dict[str, Any]:
    work = reading_batches(batches_of, size, devices)
    events = batches_of * size
    echo(f"{batches_of} batches of {size} readings built; appending from {sessions} session(s)")
    seconds, appended, used = append_all(url, work, sessions)
    return {
        "batches": batches_of,
        "batch_size": size,
        "sessions": sessions,
        "events": events,
        "appended": appended,
        "stored": events_in(url),
        "seconds": round(seconds, 2),
        "events_per_s": per_second(appended, seconds),
        "cpu_us_per_event": {name: round(s * 1e6 / events, 1) for name, s in used.items()},
    }


def markdown(result: dict[str, Any]) -> str:
    host = result["host"]
    lines = [
        "# Event store append benchmark",
        "",
        f"{host['cpus']} CPUs, Python {host['python']}, PostgreSQL {host['postgresql']},"
        f" commit {host['commit']}; batches of {result['batch_size']:,} readings appended"
        " straight through the store (no HTTP), one statement per batch, autocommit.",
        "",
        "| sessions | events | seconds | events/s | CPU µs/event database / Python |",
        "|---:|---:|---:|---:|---|",
    ]
    for run in result["runs"]:
        cpu = run["cpu_us_per_event"]
        lines.append(
            f"| {run['sessions']} | {run['appended']:,} | {run['seconds']}"
            f" | **{run['events_per_s']:,.0f}** | {cpu['database']} / {cpu['python']} |"
        )
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--admin-dsn", default=ADMIN_DSN, show_default=True)
@click.option("--batches", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option(
    "--sessions",
    default="1,2",
    show_default=True,
    help="Comma-separated session counts, each run on a fresh database.",
)
@click.option("--devices", type=click.IntRange(min=2), default=10_000, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=RESULTS, show_default=True)
def cli(
    admin_dsn: str, batches: int, batch_size: int, sessions: str, devices: int, out: Path
) -> None:
    """Time appends of batches straight through the event store; write store.json/.md."""
    counts = [int(part) for part in sessions.split(",") if part.strip()]
    result: dict[str, Any] = {"batch_size": batch_size, "runs": []}
    for count in counts:
        with fresh_database(admin_dsn) as url:
            result.setdefault("host", host_facts(url))
            figures = run_benchmark(
                url,
                batches_of=batches,
                size=batch_size,
                sessions=count,
                devices=devices,
                echo=click.echo,
            )
        click.echo(
            f"{count} session(s): {figures['events_per_s']:,.0f} events/s;"
            f" CPU µs/event {figures['cpu_us_per_event']}"
        )
        result["runs"].append(figures)
    as_json, _ = write_results(result, out, "store", markdown)
    click.echo(f"wrote {as_json}")
    exact = all(run["stored"] == run["appended"] == run["events"] for run in result["runs"])
    if not exact:  # an event lost or stored twice
        raise SystemExit(1)


if __name__ == "__main__":
    cli()
