"""The read API's latency over HTTP: analytics, live state, fleet, at 1 and 8 clients.

``python -m bench.reads --database-url URL`` works on a database whose projections are
caught up (``bench.projections --keep-database`` leaves one with 10 million history rows
per stream); without ``--database-url`` it seeds and catches up one of its own. It runs
the fleet refresh once (so that lists and the fleet summary have their figures), starts
``python -m main serve`` with authentication on and a reader token of its own, and for
each endpoint and client count sends requests for ``--seconds`` over keep-alive
connections: the 24-hour analytics of random vehicles (each window ending at that vehicle's
own last reading, fixed, so that every answer counts a full day of readings; how many of a
sample do is checked and reported), a random vehicle's live state, and the fleet summary.
Every answer must be a 200. Figures: requests/s and latency p50/p95/p99/max.
Results go to ``bench/results/reads.json`` and ``.md``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import orjson
import psycopg

from bench.harness import (
    ADMIN_DSN,
    RESULTS,
    Echo,
    host_facts,
    issue_token,
    seeded_database,
    server,
    write_results,
)
from bench.loadgen import Connection, latency_ms, per_second
from projections.fleet_efficiency import FleetEfficiencyRefresh

TOKEN_KEY = "the read benchmark's token key"
LAST_READING = "SELECT max(recorded_at) FROM vehicle_history"
VEHICLES = "SELECT vehicle_id, recorded_at FROM vehicle_live ORDER BY vehicle_id"
CHECKED = 50  # analytics answers looked at before timing: do their windows hold data?


def reader_token(url: str) -> str:
    return issue_token(url, "reader", TOKEN_KEY, "bench.reads")


async def hammer(
    base: str, token: str, paths: list[str], clients: int, seconds: float
) -> dict[str, Any]:
    url = urlsplit(base)
    rng = random.Random(clients)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        conn = Connection(url.hostname or "127.0.0.1", url.port or 80, token)
        try:
            while time.perf_counter() < deadline:
                path = rng.choice(paths)
                began = time.perf_counter()
                status, _ = await conn.request("GET", path)
                latencies.append(time.perf_counter() - began)
                statuses[status] += 1
        finally:
            conn.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - began
    return {
        "clients": clients,
        "requests": len(latencies),
        "requests_per_s": per_second(len(latencies), elapsed),
        "latency_ms": latency_ms(latencies),
        "statuses": {str(k): v for k, v in statuses.items()},
    }


def run_benchmark(url: str, *, seconds: float, workers: int, echo: Echo) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        [(end,)] = conn.execute(LAST_READING).fetchall()
        last_reading: dict[str, datetime] = dict(conn.execute(VEHICLES).fetchall())
        vehicles = sorted(last_reading)
        refreshed = time.perf_counter()
        FleetEfficiencyRefresh().run(conn, end=end)
        refresh_s = time.perf_counter() - refreshed
        conn.execute("ANALYZE fleet_efficiency")
    echo(f"{len(vehicles):,} vehicles; fleet refresh {refresh_s:.2f} s; data until {end}")
    token = reader_token(url)
    sample = random.Random(7).sample(vehicles, min(len(vehicles), 2000))
    endpoints = {
        "analytics": [
            f"/v1/analytics/performance/{v}?to={int(last_reading[v].timestamp())}" for v in sample
        ],
        "vehicle": [f"/v1/vehicles/{v}" for v in sample],
        "fleet": ["/v1/fleet/summary"],
    }
    result: dict[str, Any] = {
        "host": host_facts(url),
        "vehicles": len(vehicles),
        "fleet_refresh_s": round(refresh_s, 3),
        "server": {"workers": workers},
        "steps": {},
    }
    # Authentication on, as in production; no rate limit (one token drives all the load).
    settings = {
        "ENERGY_AUTH": "on",
        "ENERGY_TOKEN_KEY": TOKEN_KEY,
        "ENERGY_RATE_PER_CREDENTIAL": "0",
    }
    with server(url, workers, settings=settings) as running:
        result["analytics_with_data"] = with_data = asyncio.run(
            answers_with_data(running.url, token, endpoints["analytics"][:CHECKED])
        )
        echo(f"analytics answers with readings in their window: {with_data} of {CHECKED}")
        for name, paths in endpoints.items():
            asyncio.run(hammer(running.url, token, paths, 8, 1.0))  # warm the workers' pools
            for clients in (1, 8):
                figures = asyncio.run(hammer(running.url, token, paths, clients, seconds))
                result["steps"][f"{name}-{clients}"] = figures
                lat = figures["latency_ms"]
                echo(
                    f"{name} x{clients}: {figures['requests_per_s']:,.0f} req/s,"
                    f" p50 {lat['p50']} p99 {lat['p99']} ms, statuses {figures['statuses']}"
                )
    return result


async def answers_with_data(base: str, token: str, paths: list[str]) -> int:
    """How many of ``paths`` answer with both vehicle and meter readings in the window."""
    url = urlsplit(base)
    conn = Connection(url.hostname or "127.0.0.1", url.port or 80, token)
    counted = 0
    try:
        for path in paths:
            status, data = await conn.request("GET", path)
            answer = orjson.loads(data) if status == 200 else {}
            counted += bool(answer.get("vehicleReadings") and answer.get("meterReadings"))
    finally:
        conn.close()
    return counted


def markdown(result: dict[str, Any]) -> str:
    host = result["host"]
    lines = [
        "# Read API latency over HTTP",
        "",
        f"{host['cpus']} CPUs, Python {host['python']}, PostgreSQL {host['postgresql']},"
        f" commit {host['commit']}; {result['vehicles']:,} vehicles; server"
        f" {result['server']['workers']} workers, auth on (a reader token); analytics windows"
        f" end at each vehicle's last reading ({result.get('analytics_with_data', '?')} of"
        f" {CHECKED} sampled answers count readings of both the vehicle and its meter).",
        "",
        "| endpoint | clients | req/s | p50 ms | p95 ms | p99 ms | max ms | statuses |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, figures in result["steps"].items():
        lat = figures["latency_ms"]
        lines.append(
            f"| {name.rsplit('-', 1)[0]} | {figures['clients']} | {figures['requests_per_s']:,.0f}"
            f" | {lat['p50']} | {lat['p95']} | **{lat['p99']}** | {lat['max']}"
            f" | {figures['statuses']} |"
        )
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--database-url", default=None, help="A caught-up database to read.")
@click.option("--admin-dsn", default=ADMIN_DSN, show_default=True)
@click.option("--devices", type=click.IntRange(min=2), default=2000, show_default=True)
@click.option("--readings", type=click.IntRange(min=1), default=1440, show_default=True)
@click.option("--seconds", type=click.FloatRange(min=0.1), default=15.0, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=RESULTS, show_default=True)
def cli(
    database_url: str | None,
    admin_dsn: str,
    devices: int,
    readings: int,
    seconds: float,
    workers: int,
    out: Path,
) -> None:
    """Time the read API over HTTP; write reads.json/.md."""
    with seeded_database(admin_dsn, devices, readings, given=database_url) as url:
        result = run_benchmark(url, seconds=seconds, workers=workers, echo=click.echo)
    as_json, _ = write_results(result, out, "reads", markdown)
    click.echo(f"wrote {as_json}")
    bad = {k: v for k, f in result["steps"].items() for k, v in f["statuses"].items() if k != "200"}
    if bad:
        raise SystemExit(1)


if __name__ == "__main__":
    cli()
