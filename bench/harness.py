"""What every benchmark runs against: a fresh, migrated database on a PostgreSQL server,
an API server of its own on a free loopback port, and the facts of the machine."""

from __future__ import annotations

import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

import migrations

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

CREATE_DATABASE = sql.SQL("CREATE DATABASE {name}")
DROP_DATABASE = sql.SQL("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
SERVER_VERSION = "SHOW server_version"


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
            yield Server(url, process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


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
