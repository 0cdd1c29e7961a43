"""The standard benchmark: a fresh database, a server of its own, a list of named steps.

``python -m bench.run`` creates a database on the given PostgreSQL server, migrates it,
starts ``python -m main serve`` on a free loopback port, waits for ``/ready`` and runs the
steps of ``STEPS`` in order: the no-op ceiling (``GET /health`` at 64 clients), single-reading
ingest at 8 and 64 clients, and batched ingest of 1,000 readings per request. Every write step
is verified against the database (no acknowledged reading lost or stored twice). The results
go to ``bench/results/latest.json`` and a short Markdown table in ``latest.md``.

To add a step (projection catch-up, analytics queries), append a ``Step`` to ``STEPS``: it
gets the ``Context`` (server URL, database URL, sizes) and returns a JSON-ready dict. Figures
shaped like ``loadgen``'s (``requests_per_s``, ``latency_ms``...) get a row of the Markdown
table; any other step is listed under it with its description.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import psycopg
from psycopg.conninfo import conninfo_to_dict

import migrations
from bench import loadgen, reads, seed
from bench.harness import (
    ADMIN_DSN,
    RESULTS,
    catch_up_all,
    events_in,
    fresh_database,
    host_facts,
    issue_token,
    server,
    write_results,
)
from main import Settings

EVENTS_BY_TYPE = "SELECT event_type, count(*) FROM events GROUP BY event_type ORDER BY 1"
LAST_SEEDED = "SELECT max(recorded_at) FROM vehicle_history WHERE vehicle_id LIKE 'seed-%%'"
SEEDED_VEHICLES = "SELECT vehicle_id FROM vehicle_live WHERE vehicle_id LIKE 'seed-%%' LIMIT 2000"
TOKEN_KEY = "the standard benchmark's token key"


@dataclass(frozen=True)
class Sizes:
    """How much each step does: a time bound, and optional count bounds per kind of step."""

    duration_s: float = 15.0
    meters: int = 100
    vehicles: int = 100
    batch_size: int = 1000
    # Eight, not four: a worker serves the connections it accepted until they close, and the
    # kernel hands each new one to whichever worker wins it. Four batch clients were all
    # served by one worker often enough (40,506 readings/s in such a run, 46,099-56,704
    # split 2/2) that the figure measured the split. Were the kernel a fair coin, all four
    # would land on one worker in 1 run of 8, all eight in 1 of 128.
    batch_clients: int = 8
    health_requests: int | None = None
    single_readings: int | None = None
    batch_readings: int | None = None
    warmup_readings: int = 2000
    seed_devices: int = 2000  # history seeded before the server starts (catch-up, analytics)
    seed_days: float = 0.5


SMOKE = Sizes(
    duration_s=3.0,
    meters=4,
    vehicles=4,
    batch_clients=2,
    health_requests=300,
    single_readings=120,
    batch_readings=2500,
    warmup_readings=0,
    seed_devices=6,
    seed_days=0.05,
)


@dataclass(frozen=True)
class Context:
    """What a step is given: the running server, its database and the run's sizes."""

    url: str
    database_url: str
    sizes: Sizes
    token: str | None = None  # the bearer token the server expects
    # CPU seconds used so far by the server and the database (see ``cpu_seconds``).
    cpu: Callable[[], dict[str, float]] | None = None


@dataclass(frozen=True)
class Step:
    """A named benchmark step; ``run`` returns its figures as a JSON-ready dict."""

    name: str
    description: str
    run: Callable[[Context], dict[str, Any]]


def load_step(name: str, description: str, mode: str, clients: int | None = None) -> Step:
    """A step driving ``loadgen`` in ``mode``; ``clients=None`` means the batch clients size."""

    def run(ctx: Context) -> dict[str, Any]:
        sizes = ctx.sizes
        bound: dict[str, Any] = {
            "health": {"requests": sizes.health_requests},
            "single": {"readings": sizes.single_readings},
            "batch": {"readings": sizes.batch_readings},
        }[mode]
        config = loadgen.Config(
            url=ctx.url,
            mode=mode,
            concurrency=clients or sizes.batch_clients,
            batch_size=sizes.batch_size,
            meters=sizes.meters,
            vehicles=sizes.vehicles,
            prefix=f"{name}-",
            duration_s=sizes.duration_s,
            token=ctx.token,
            **bound,
        )
        return loadgen.run(config, None if mode == "health" else ctx.database_url, ctx.cpu)

    return Step(name, description, run)


STEPS: list[Step] = [
    load_step("health-64", "GET /health at 64 clients: the no-op ceiling", "health", 64),
    load_step("single-8", "one reading per request, 8 clients", "single", 8),
    load_step("single-64", "one reading per request, 64 clients", "single", 64),
    load_step("batch-1000", "JSON arrays of 1,000 readings", "batch"),
]


def catch_up_step(ctx: Context) -> dict[str, Any]:
    """Every projection from position zero to the head: the seeded history and all the
    readings the steps before wrote (no projector runs meanwhile)."""
    events = events_in(ctx.database_url)
    seconds = catch_up_all(ctx.database_url, 5000)
    return {
        "events": events,
        "seconds": round(seconds, 2),
        "events_per_s": loadgen.per_second(events, seconds),
    }


def analytics_step(clients: int) -> Callable[[Context], dict[str, Any]]:
    """The 24-hour analytics of random seeded vehicles over HTTP, after the catch-up."""

    def run(ctx: Context) -> dict[str, Any]:
        with psycopg.connect(ctx.database_url) as conn:
            [(end,)] = conn.execute(LAST_SEEDED).fetchall()
            vehicles = [row[0] for row in conn.execute(SEEDED_VEHICLES)]
        if end is None or not vehicles:
            return {"skipped": "no seeded history"}
        to = int(end.timestamp())
        paths = [f"/v1/analytics/performance/{v}?to={to}" for v in vehicles]
        seconds = max(ctx.sizes.duration_s / 3, 0.3)
        return asyncio.run(reads.hammer(ctx.url, ctx.token or "", paths, clients, seconds))

    return run


STEPS += [
    Step("catch-up", "every projection from zero to the head of the log", catch_up_step),
    Step("analytics-1", "GET /v1/analytics/performance, 1 client", analytics_step(1)),
    Step("analytics-8", "GET /v1/analytics/performance, 8 clients", analytics_step(8)),
]


def cpu_seconds(server_pid: int, dbname: str) -> dict[str, float]:
    """CPU seconds used so far by the server (master and workers), by each worker (``worker
    PID``) and by the database's backends.

    Read from ``/proc``: Linux only, and the database counts only when it runs on this
    machine (a backend is a process whose title names the database).
    """
    tick = os.sysconf("SC_CLK_TCK")
    used = {"server": 0.0, "database": 0.0}
    marker = f" {dbname} ".encode()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            title = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick
        parent = int(fields[1])
        if server_pid in (int(entry.name), parent):
            used["server"] += seconds
            if parent == server_pid:
                used[f"worker {entry.name}"] = seconds
        elif title.startswith(b"postgres: ") and marker in title:
            used["database"] += seconds
    return used


def cpu_per_request(
    before: dict[str, float], after: dict[str, float], figures: dict[str, Any]
) -> dict[str, float]:
    """CPU milliseconds per request of the server, the database and the load generator."""
    requests = figures.get("requests") or 0
    if not requests:
        return {}
    client = figures.get("client_cpu_share", 0.0) * figures.get("elapsed_s", 0.0)
    used = {name: after[name] - before[name] for name in ("server", "database")}
    used["client"] = client
    return {name: round(seconds * 1000 / requests, 3) for name, seconds in used.items()}


def worker_shares(before: dict[str, float], after: dict[str, float]) -> list[float]:
    """Each API worker's share of the workers' CPU between the two readings, largest first:
    how evenly the kernel spread the step's connections (a worker accepts a connection and
    serves it until it closes)."""
    used = [after[name] - before.get(name, 0.0) for name in after if name.startswith("worker ")]
    total = sum(used)
    return sorted((round(part / total, 2) for part in used), reverse=True) if total else []


def events_by_type(database_url: str) -> dict[str, int]:
    """How many events of each type the database holds."""
    with psycopg.connect(database_url) as conn:
        return dict(conn.execute(EVENTS_BY_TYPE).fetchall())


def run_suite(
    *,
    admin_dsn: str = ADMIN_DSN,
    database_url: str | None = None,
    keep_database: bool = False,
    workers: int = 2,
    sizes: Sizes = Sizes(),
    steps: list[Step] | None = None,
    seed_days: float | None = None,
    auth: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run ``steps`` (default ``STEPS``) against a server of their own; the results.

    The server checks bearer tokens (``auth``, as in production): the steps send an
    operator token, with no per-credential rate limit (one token drives all the load).
    """
    steps = STEPS if steps is None else steps
    seed_days = sizes.seed_days if seed_days is None else seed_days
    defaults = Settings.from_env()  # what the server started below will run with
    with _database(admin_dsn, database_url, keep_database) as url:
        result: dict[str, Any] = {
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": host_facts(url),
            "server": {
                "workers": workers,
                "worker_class": "uvicorn (gunicorn)",
                "threads": defaults.threads,
                "auth": auth,
                "group_commit": "on" if defaults.group_commit else "off",
                "flushers": defaults.group_commit_flushers,
                "read_pool": defaults.read_pool_size,
            },
            "sizes": asdict(sizes),
            "seed": None,
            "steps": {},
        }
        if seed_days > 0:
            result["seed"] = seed.seed(
                url,
                meters=sizes.seed_devices // 2,
                vehicles=sizes.seed_devices - sizes.seed_devices // 2,
                days=seed_days,
                prefix="seed-",
                jobs=os.cpu_count() or 1,
            )
            echo(f"seed: {result['seed']['events']} events, {result['seed']['events_per_s']}/s")
        dbname = str(conninfo_to_dict(url).get("dbname", ""))
        token = operator_token(url) if auth else None
        settings = {
            "ENERGY_AUTH": "on" if auth else "off",
            "ENERGY_TOKEN_KEY": TOKEN_KEY,
            "ENERGY_RATE_PER_CREDENTIAL": "0",
        }
        with server(url, workers, settings=settings) as running:
            if sizes.warmup_readings:
                _warm_up(running.url, sizes, token)
            cpu = functools.partial(cpu_seconds, running.pid, dbname)
            for step in steps:
                context = Context(
                    url=running.url, database_url=url, sizes=sizes, token=token, cpu=cpu
                )
                figures = step.run(context)
                # The load steps' timed phase only: not the mappings before, nor the check
                # of every acknowledged id after (both used to be counted, per request).
                probed = figures.pop("probed", None)
                if probed:
                    figures["cpu_ms_per_request"] = cpu_per_request(
                        probed["before"], probed["after"], figures
                    )
                    figures["worker_cpu_shares"] = worker_shares(probed["before"], probed["after"])
                result["steps"][step.name] = {"description": step.description, **figures}
                echo(describe(step.name, figures))
        result["events_by_type"] = events_by_type(url)
        if keep_database:
            echo(f"database kept: {url}")
        result["ceiling_ratio"] = ceiling_ratio(result["steps"])
    return result


@contextmanager
def _database(admin_dsn: str, database_url: str | None, keep: bool) -> Iterator[str]:
    if database_url is not None:
        migrations.migrate(database_url)
        yield database_url
        return
    with fresh_database(admin_dsn, keep) as url:
        yield url


def operator_token(url: str) -> str:
    """A fresh operator token for the run (the server checks it under ``TOKEN_KEY``)."""
    return issue_token(url, "operator", TOKEN_KEY, "bench.run")


def describe(name: str, figures: dict[str, Any]) -> str:
    """One line for a step: loadgen's for a load step, the figures otherwise."""
    if "config" in figures:
        return loadgen.describe(name, figures)
    shown = {k: v for k, v in figures.items() if k not in ("cpu_ms_per_request", "description")}
    return f"{name}: {shown}"


def _warm_up(base: str, sizes: Sizes, token: str | None) -> None:
    """Open the workers' pool connections before anything is measured (not reported)."""
    config = loadgen.Config(
        url=base,
        concurrency=16,
        meters=sizes.meters,
        vehicles=sizes.vehicles,
        prefix="warmup-",
        readings=sizes.warmup_readings,
        duration_s=10.0,
        token=token,
    )
    loadgen.run(config)


def ceiling_ratio(steps: dict[str, Any]) -> dict[str, float]:
    """Each write step's readings/s over the ``GET /health`` requests/s (the no-op ceiling).

    For one reading per request it is the share of the ceiling the write path leaves; for
    batches it shows how many readings a batch stores in the time of one no-op request.
    """
    ceiling = steps.get("health-64", {}).get("requests_per_s")
    if not ceiling:
        return {}
    return {
        name: round(figures["readings_per_s"] / ceiling, 3)
        for name, figures in steps.items()
        if name != "health-64" and "readings_per_s" in figures
    }


def markdown(result: dict[str, Any]) -> str:
    """A short Markdown report: one table row per step."""
    host = result["host"]
    lines = [
        f"# Benchmark {result['started_at']}",
        "",
        f"{host['cpus']} CPUs, Python {host['python']}, PostgreSQL {host['postgresql']}, "
        f"commit {host['commit']}; server: {result['server']['workers']} uvicorn workers"
        f" under gunicorn ({result['server']['threads']} threads each for blocking work),"
        f" auth {_on(result['server'].get('auth'))},"
        f" group commit {result['server'].get('group_commit', 'on')}"
        f" ({result['server'].get('flushers', '?')} flusher per worker);"
        f" {result['sizes']['duration_s']} s per step.",
        "",
        "| step | clients | req/s | readings/s | p50 ms | p95 ms | p99 ms | max ms "
        "| errors | lost/doubled | readings/s vs /health req/s | CPU ms/req server/db/client "
        "| workers' CPU split |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|---|",
    ]
    others = []
    for name, figures in result["steps"].items():
        if "events_per_s" in figures:
            others.append(
                f"- {name} ({figures['description']}): {figures['events']:,} events in"
                f" {figures['seconds']} s = **{figures['events_per_s']:,.0f} events/s**"
            )
            continue
        if "latency_ms" in figures and "clients" in figures:
            lat = figures["latency_ms"]
            failed = {k: v for k, v in figures["statuses"].items() if k != "200"}
            lines.append(
                f"| {name} | {figures['clients']} | {figures['requests_per_s']:.0f} | - "
                f"| {lat['p50']} | {lat['p95']} | {lat['p99']} | {lat['max']} "
                f"| {_errors(failed)} | - | - | - | - |"
            )
            continue
        if "latency_ms" not in figures or "config" not in figures:
            others.append(f"- {name}: {figures.get('description', '')} (see latest.json)")
            continue
        lat, check = figures["latency_ms"], figures.get("verify")
        ratio = result["ceiling_ratio"].get(name)
        verified = f"{check['lost']}/{check['doubled']}" if check else "-"
        share = f"{ratio:.0%}" if ratio is not None else "-"
        cpu = figures.get("cpu_ms_per_request") or {}
        cpu_text = "/".join(f"{cpu[k]:.2f}" for k in ("server", "database", "client") if k in cpu)
        split = "/".join(f"{share:.0%}" for share in figures.get("worker_cpu_shares") or [])
        lines.append(
            f"| {name} | {figures['config']['concurrency']} | {figures['requests_per_s']:.0f} "
            f"| {figures['readings_per_s']:.0f} | {lat['p50']} | {lat['p95']} | {lat['p99']} "
            f"| {lat['max']} | {_errors(figures['errors'])} | {verified} | {share} "
            f"| {cpu_text or '-'} | {split or '-'} |"
        )
    if others:
        lines += ["", *others]
    if result["seed"]:
        seeded = result["seed"]
        lines.append(
            f"\nSeeded first: {seeded['events']} events by COPY, {seeded['events_per_s']:.0f}/s."
        )
    return "\n".join(lines) + "\n"


def _on(flag: object) -> str:
    return "on" if flag else "off"


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{status}: {count}" for status, count in errors.items()) or "0"


@click.command()
@click.option("--admin-dsn", default=ADMIN_DSN, show_default=True, help="Server to create on.")
@click.option("--database-url", default=None, help="Use this database instead (not dropped).")
@click.option("--keep-database", is_flag=True, help="Do not drop the fresh database at the end.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--duration", type=click.FloatRange(min=0.1), default=None, help="Seconds/step.")
@click.option("--meters", type=click.IntRange(min=1), default=None)
@click.option("--vehicles", type=click.IntRange(min=1), default=None)
@click.option("--batch-clients", type=click.IntRange(min=1), default=None)
@click.option(
    "--seed-days",
    type=click.FloatRange(min=0),
    default=None,
    help="Days of history for the seed devices, seeded first [0.5; smoke 0.05].",
)
@click.option("--auth/--no-auth", default=True, show_default=True, help="Bearer tokens checked.")
@click.option("--steps", "names", default=None, help="Comma-separated step names [all].")
@click.option("--smoke", is_flag=True, help="Tiny sizes: a few seconds in all.")
@click.option("--out", type=click.Path(path_type=Path), default=RESULTS, show_default=True)
def cli(
    admin_dsn: str,
    database_url: str | None,
    keep_database: bool,
    workers: int,
    duration: float | None,
    meters: int | None,
    vehicles: int | None,
    batch_clients: int | None,
    seed_days: float | None,
    auth: bool,
    names: str | None,
    smoke: bool,
    out: Path,
) -> None:
    """Run the standard benchmark steps against a fresh server; write latest.json/.md."""
    changes: dict[str, Any] = {
        "duration_s": duration,
        "meters": meters,
        "vehicles": vehicles,
        "batch_clients": batch_clients,
    }
    sizes = replace(SMOKE if smoke else Sizes(), **{k: v for k, v in changes.items() if v})
    steps = STEPS
    if names:
        wanted = [name.strip() for name in names.split(",")]
        unknown = set(wanted) - {step.name for step in STEPS}
        if unknown:
            raise click.BadParameter(f"unknown steps {sorted(unknown)}", param_hint="--steps")
        steps = [step for step in STEPS if step.name in wanted]
    result = run_suite(
        admin_dsn=admin_dsn,
        database_url=database_url,
        keep_database=keep_database,
        workers=workers,
        sizes=sizes,
        steps=steps,
        seed_days=seed_days,
        auth=auth,
        echo=click.echo,
    )
    for path in write_results(result, out, "latest", markdown):
        click.echo(f"wrote {path}")
    checks = [s["verify"] for s in result["steps"].values() if s.get("verify")]
    if any(check["lost"] or check["doubled"] for check in checks):
        raise SystemExit(1)


if __name__ == "__main__":
    cli()
