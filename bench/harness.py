"""What every benchmark runs against: a fresh, migrated database on a PostgreSQL server,
an API server of its own on a free loopback port, and the facts of the machine."""

from __future__ import annotations

import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

import migrations
from bench import seed
from commands.credentials import Credentials
from projections.catalogue import with_ledger
from projections.runtime import (
    Projection,
    catch_up,
    ensure_checkpoints,
    has_pending,
    projector_session,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

CREATE_DATABASE = sql.SQL("CREATE DATABASE {name}")
DROP_DATABASE = sql.SQL("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
SERVER_VERSION = "SHOW server_version"
COUNT_EVENTS = "SELECT count(*) FROM events"
BENCH_LEDGER_KEY = b"the benchmark's ledger key"

Echo = Callable[[str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class Server:
    """A running API server: its base URL and the gunicorn master's process id."""

    url: str
    pid: int


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def fresh_database(admin_dsn: str, keep: bool = False) -> Iterator[str]:
    """A new, migrated database on ``admin_dsn``'s server, dropped afterwards unless ``keep``."""
    dbname = f"energy_bench_{secrets.token_hex(6)}"
    name = sql.Identifier(dbname)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(CREATE_DATABASE.format(name=name))
    url = make_conninfo(admin_dsn, dbname=dbname)
    try:
        migrations.migrate(url)
        yield url
    finally:
        if not keep:
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(DROP_DATABASE.format(name=name))


@contextmanager
def server(
    database_url: str,
    workers: int,
    timeout_s: float = 30.0,
    settings: dict[str, str] | None = None,
) -> Iterator[Server]:
    """``python -m main serve`` on a free port of its own, yielded once it is ready.

    ``settings`` are extra ``ENERGY_*`` variables; without them authentication is off
    (a benchmark that measures it passes ``ENERGY_AUTH`` and ``ENERGY_TOKEN_KEY``).
    """
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ENERGY_LOG_LEVEL": "warning",
        "ENERGY_AUTH": "off",
        **(settings or {}),
    }
    command = [sys.executable, "-m", "main", "serve", "--bind", f"127.0.0.1:{port}"]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [*command, "--workers", str(workers)], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, process, timeout_s, log)
            _wait_listening(port, workers, timeout_s)
            yield Server(url, process.pid)
        finally:
            stop(process)


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float, log: Any) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    log.seek(0)
    tail = log.read()[-4000:].decode(errors="replace")
    raise RuntimeError(f"the server at {url} did not become ready:\n{tail}")


LISTEN = "0A"  # a TCP socket's state in /proc/net/tcp
ESTABLISHED = "01"


def tcp_sockets(port: int, state: str) -> set[int]:
    """The inodes of this machine's IPv4 TCP sockets on local ``port`` in ``state`` (read
    from Linux's ``/proc/net/tcp``)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == state and int(fields[1].rsplit(":", 1)[1], 16) == port:
            found.add(int(fields[9]))
    return found


def _wait_listening(port: int, workers: int, timeout_s: float) -> None:
    """Until every worker listens: each has a socket of its own, and a connection opened
    before the last one does would all go to the others."""
    if not Path("/proc/net/tcp").exists():
        return
    deadline = time.monotonic() + timeout_s
    while len(tcp_sockets(port, LISTEN)) < workers and time.monotonic() < deadline:
        time.sleep(0.05)


def host_facts(database_url: str) -> dict[str, Any]:
    """Where the figures come from: machine, Python, PostgreSQL and commit."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(SERVER_VERSION).fetchone()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": row[0] if row else None,
        "commit": commit or None,
    }


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if it has not exited 30 s later."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def issue_token(url: str, role: str, key: str, issued_by: str) -> str:
    """A fresh token of ``role`` (the server must check tokens under ``key``)."""
    with ConnectionPool(url, min_size=1, max_size=1, open=True) as pool:
        _, token = Credentials(pool, key.encode()).issue(
            {"identity": f"{issued_by}-{secrets.token_hex(4)}", "role": role},
            issued_by=issued_by,
            now=datetime.now(UTC),
        )
    return token


def drain(conn: psycopg.Connection[Any], projection: Projection, batch_size: int) -> int:
    """Apply ``projection`` up to the head of the log; the events applied. An empty round
    may only mean the fence is held a moment: it stops when nothing is left behind the
    projection's checkpoint."""
    applied = 0
    while (step := catch_up(conn, projection, batch_size)) or has_pending(conn, projection.name):
        applied += step
        if not step:
            time.sleep(0.01)
    return applied


def in_threads(work: Callable[[T], object], items: Iterable[T]) -> float:
    """``work`` on every item at once, a thread each; the seconds until all are done."""
    threads = [threading.Thread(target=work, args=(item,)) for item in items]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began


def catch_up_all(url: str, batch_size: int, projections: list[Projection] | None = None) -> float:
    """Every projection (default: all, the ledger with ``BENCH_LEDGER_KEY``) to the head,
    a thread each; the seconds it took."""
    chosen = projections or list(with_ledger(BENCH_LEDGER_KEY).values())
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_checkpoints(conn, chosen)

    def run(projection: Projection) -> None:
        with projector_session(psycopg.connect(url)) as conn:
            drain(conn, projection, batch_size)

    return in_threads(run, chosen)


def events_in(url: str) -> int:
    """The events in the log."""
    with psycopg.connect(url) as conn:
        row = conn.execute(COUNT_EVENTS).fetchone()
    return int(row[0]) if row else 0


def write_results(
    result: dict[str, Any], folder: Path, name: str, markdown: Callable[[dict[str, Any]], str]
) -> tuple[Path, Path]:
    """Write ``<name>.json`` and ``<name>.md`` (``markdown(result)``) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    as_json, as_md = folder / f"{name}.json", folder / f"{name}.md"
    as_json.write_text(json.dumps(result, indent=2) + "\n")
    as_md.write_text(markdown(result))
    return as_json, as_md


@contextmanager
def seeded_database(
    admin_dsn: str, devices: int, readings: int, given: str | None = None
) -> Iterator[str]:
    """``given`` when there is one (a caught-up database the caller names, kept), else a
    fresh database with ``devices`` (half meters) x ``readings`` (60 s apart) seeded and
    every projection caught up, dropped afterwards."""
    if given is not None:
        yield given
        return
    with fresh_database(admin_dsn) as url:
        seed.seed(
            url,
            meters=devices // 2,
            vehicles=devices - devices // 2,
            days=readings / 1440,
            jobs=os.cpu_count() or 1,
        )
        catch_up_all(url, 5000)
        yield url
