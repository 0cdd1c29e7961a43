"""The auditors' and engineers' benchmark: ledger build, ``events verify``, and rebuilds.

``python -m bench.audit --database-url URL`` works on a database whose log is seeded and
whose projections are caught up (``bench.projections --keep-database`` leaves one of 20
million events); without ``--database-url`` it seeds one of its own (``--devices`` x
``--readings``) and catches it up first. Then, timing each:

1. **ledger**: the ledger projection from position zero to the head (its checkpoint row and
   tables are reset first), as the projector builds it;
2. **verify**: ``projections.ledger.verify`` over the whole log: recompute the chain,
   compare every entry and signed checkpoint (what ``energy events verify`` does);
3. **rebuild, each alone**: ``projections.rebuild.rebuild`` of every projection in turn,
   from position zero into new tables and the switch;
4. **rebuild, all together**: every projection's rebuild at once, a thread each.

Figures are events per second. Results go to ``bench/results/audit.json`` and ``.md``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import psycopg

from bench.harness import (
    ADMIN_DSN,
    BENCH_LEDGER_KEY,
    RESULTS,
    Echo,
    drain,
    events_in,
    host_facts,
    in_threads,
    seeded_database,
    write_results,
)
from bench.loadgen import per_second
from projections.catalogue import LEDGER, with_ledger
from projections.ledger import verify
from projections.rebuild import rebuild
from projections.runtime import ensure_checkpoints, projector_session
from queries.ledger import checkpoints

KEY = BENCH_LEDGER_KEY
RESET_LEDGER = """
TRUNCATE ledger_entries, ledger_checkpoints;
DELETE FROM projection_checkpoints WHERE name = 'ledger'
"""


def build_ledger(url: str, batch_size: int) -> dict[str, Any]:
    """The ledger from position zero, timed."""
    ledger = with_ledger(KEY)[LEDGER]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RESET_LEDGER)
        ensure_checkpoints(conn, [ledger])
    events = events_in(url)
    with projector_session(psycopg.connect(url)) as conn:
        began = time.perf_counter()
        applied = drain(conn, ledger, batch_size)
        elapsed = time.perf_counter() - began
    return {
        "events": applied,
        "of": events,
        "seconds": round(elapsed, 2),
        "events_per_s": per_second(applied, elapsed),
    }


def time_verify(url: str) -> dict[str, Any]:
    with (
        psycopg.connect(url, autocommit=True) as log_conn,
        psycopg.connect(url, autocommit=True) as ledger_conn,
    ):
        began = time.perf_counter()
        result = verify(log_conn, ledger_conn, KEY, checkpoints(ledger_conn))
        elapsed = time.perf_counter() - began
    return {
        "ok": result.ok,
        "events": result.events,
        "chained": result.chained,
        "checkpoints": result.checkpoints,
        "seconds": round(elapsed, 2),
        "events_per_s": per_second(result.events, elapsed),
    }


def time_rebuild(url: str, name: str, batch_size: int) -> dict[str, Any]:
    projection = with_ledger(KEY)[name]
    began = time.perf_counter()
    outcome = rebuild(lambda: psycopg.connect(url), projection, batch_size=batch_size)
    elapsed = time.perf_counter() - began
    return {
        "events": outcome["applied"],
        "switched": outcome["switched"],
        "seconds": round(elapsed, 2),
        "events_per_s": per_second(outcome["applied"], elapsed),
    }


def rebuild_all(url: str, batch_size: int) -> dict[str, Any]:
    """Every projection's rebuild at once; all events applied over the wall time."""
    names = list(with_ledger(KEY))
    found: dict[str, Any] = {}

    def run(name: str) -> None:
        found[name] = time_rebuild(url, name, batch_size)

    elapsed = in_threads(run, names)
    events = events_in(url)
    return {
        "projections": found,
        "seconds": round(elapsed, 2),
        "events": events,
        # Each projection reads the whole log: the log's rate is events over the wall time.
        "events_per_s": per_second(events, elapsed),
        "all_switched": all(f["switched"] for f in found.values()) and len(found) == len(names),
    }


def run_benchmark(url: str, *, batch_size: int, each: bool, echo: Echo) -> dict[str, Any]:
    result: dict[str, Any] = {"host": host_facts(url), "events": events_in(url)}
    echo(f"{result['events']:,} events")
    result["ledger"] = build_ledger(url, batch_size)
    echo(f"ledger built: {result['ledger']['events_per_s']:,.0f} events/s")
    result["verify"] = time_verify(url)
    echo(f"verify: {result['verify']['events_per_s']:,.0f} events/s, ok={result['verify']['ok']}")
    if each:
        result["rebuild_each"] = {}
        for name in with_ledger(KEY):
            result["rebuild_each"][name] = time_rebuild(url, name, batch_size)
            echo(f"rebuild {name}: {result['rebuild_each'][name]['events_per_s']:,.0f} events/s")
    result["rebuild_all"] = rebuild_all(url, batch_size)
    echo(f"rebuild all together: {result['rebuild_all']['events_per_s']:,.0f} events/s")
    return result


def markdown(result: dict[str, Any]) -> str:
    host = result["host"]
    lines = [
        "# Audit and rebuild benchmark",
        "",
        f"{host['cpus']} CPUs, Python {host['python']}, PostgreSQL {host['postgresql']},"
        f" commit {host['commit']}; {result['events']:,} events.",
        "",
        "| step | events | seconds | events/s |",
        "|---|---:|---:|---:|",
        f"| ledger, built from zero | {result['ledger']['events']:,}"
        f" | {result['ledger']['seconds']} | {result['ledger']['events_per_s']:,.0f} |",
        f"| events verify (ok: {result['verify']['ok']}) | {result['verify']['events']:,}"
        f" | {result['verify']['seconds']} | **{result['verify']['events_per_s']:,.0f}** |",
    ]
    for name, figures in result.get("rebuild_each", {}).items():
        lines.append(
            f"| rebuild {name} alone | {figures['events']:,} | {figures['seconds']}"
            f" | {figures['events_per_s']:,.0f} |"
        )
    together = result["rebuild_all"]
    lines.append(
        f"| rebuild all {len(together['projections'])} together | {together['events']:,} each"
        f" | {together['seconds']} | **{together['events_per_s']:,.0f}** |"
    )
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--database-url", default=None, help="A seeded, caught-up database to use.")
@click.option("--admin-dsn", default=ADMIN_DSN, show_default=True)
@click.option("--devices", type=click.IntRange(min=2), default=10_000, show_default=True)
@click.option("--readings", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=5000, show_default=True)
@click.option("--no-each", is_flag=True, help="Skip rebuilding each projection alone.")
@click.option("--out", type=click.Path(path_type=Path), default=RESULTS, show_default=True)
def cli(
    database_url: str | None,
    admin_dsn: str,
    devices: int,
    readings: int,
    batch_size: int,
    no_each: bool,
    out: Path,
) -> None:
    """Time the ledger build, events verify and projection rebuilds; write audit.json/.md."""

    with seeded_database(admin_dsn, devices, readings, given=database_url) as url:
        result = run_benchmark(url, batch_size=batch_size, each=not no_each, echo=click.echo)
    as_json, _ = write_results(result, out, "audit", markdown)
    click.echo(f"wrote {as_json}")
    if not result["verify"]["ok"] or not result["rebuild_all"]["all_switched"]:
        raise SystemExit(1)


if __name__ == "__main__":
    cli()
