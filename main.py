"""Composition root: settings from the environment, pools, ``asgi()`` for gunicorn, the CLI.

Nothing imports this module; it imports and wires everything else.
"""

from __future__ import annotations

import asyncio
import gc
import getpass
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import click
import falcon.asgi
import psycopg
from attrs import frozen
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

import migrations
from commands.credentials import Credentials
from commands.ingest import CODEC
from commands.payloads import Invalid
from domain.credentials import Role
from domain.efficiency import DEFAULT_LOW_THRESHOLD
from domain.events import device_streams
from domain.ledger import read_checkpoints, write_checkpoints
from domain.rules import TimeRules
from eventstore import START, Checkpoint, EventStore, Selection
from eventstore.export import csv_lines, ndjson
from eventstore.group_commit import GroupCommitStore
from eventstore.store import HEAD, iter_events, translated_errors
from projections.catalogue import BY_NAME as PROJECTIONS
from projections.catalogue import LEDGER, NAMES, with_ledger
from projections.fleet_efficiency import FleetEfficiencyRefresh
from projections.ledger import verify
from projections.rebuild import RebuildBusy, rebuild
from projections.runtime import Projection, Projector
from queries.credentials import CachedCredentials, RevocationListener, StoredCredential
from queries.credentials import find as find_credential
from queries.credentials import tokens as list_tokens
from queries.ledger import checkpoints as ledger_checkpoints
from queries.pool import AsyncReadPool, ReadPool
from queries.projection_status import PROJECTOR_APPLICATION, projector_sessions, statuses
from web.app import create_app
from web.bodies import MAX_DEPTH
from web.context import Dependencies, Limits, Readiness, ReadSettings, Security

log = logging.getLogger("energy")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise click.UsageError(f"{name} must be an integer, not {raw!r}") from None


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise click.UsageError(f"{name} must be a number, not {raw!r}") from None


def _secret(name: str, kept: Path) -> bytes | None:
    """A secret from the environment or, failing that, the one ``energy up`` keeps."""
    raw = os.environ.get(name) or (kept.read_text().strip() if kept.is_file() else "")
    return raw.encode() if raw else None


def _env_switch(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("on", "true", "1", "yes"):
        return True
    if raw in ("off", "false", "0", "no"):
        return False
    raise click.UsageError(f"{name} must be on or off, not {raw!r}")


def _env_moment(name: str, default: datetime) -> datetime:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise click.UsageError(f"{name} must be an ISO-8601 date-time, not {raw!r}") from None
    if moment.tzinfo is None:
        raise click.UsageError(f"{name} must carry a UTC offset, e.g. {raw}Z")
    return moment


@frozen(kw_only=True)
class Settings:
    """Every setting, read from the environment once (the README documents each one)."""

    database_url: str | None
    read_database_url: str | None
    data_dir: Path
    bind: str
    workers: int
    threads: int
    pool_size: int
    read_pool_size: int
    statement_timeout_ms: int
    max_body_bytes: int
    max_batch_items: int
    earliest_reading: datetime
    future_tolerance_s: int
    log_level: str
    projector_batch_size: int
    projector_poll_seconds: float
    projector_linger_seconds: float
    fleet_refresh_seconds: float
    ledger_key: bytes | None
    ledger_every: int
    auth: bool
    token_key: bytes | None
    rate_per_credential: float
    rate_burst: float
    max_json_depth: int
    api_role: str
    projector_role: str
    group_commit: bool
    group_commit_flushers: int
    read: ReadSettings

    @classmethod
    def from_env(cls) -> Settings:
        cpus = os.cpu_count() or 1
        # Each worker's event loop hands blocking work (reads, the rarer writes, large
        # batches) to a pool of this many threads; they share the database pools below, so
        # more threads mostly wait (README, "Worker model").
        threads = _env_int("ENERGY_THREADS", 16)
        data_dir = Path(os.environ.get("ENERGY_DATA_DIR", ".energy"))
        return cls(
            database_url=os.environ.get("DATABASE_URL") or None,
            read_database_url=os.environ.get("ENERGY_READ_DATABASE_URL") or None,
            data_dir=data_dir,
            bind=os.environ.get("ENERGY_BIND", "127.0.0.1:3000"),
            workers=_env_int("ENERGY_WORKERS", cpus),
            threads=threads,
            pool_size=_env_int("ENERGY_POOL_SIZE", min(threads, 8)),
            # Queries beyond the cores only queue in the kernel's scheduler instead of the
            # pool's fair queue: measured on 2 cores, analytics at 8 clients had p99 26-30
            # ms with 8 read connections per worker and 12-14 ms with 3-4 (README).
            read_pool_size=_env_int("ENERGY_READ_POOL_SIZE", 4),
            statement_timeout_ms=_env_int("ENERGY_STATEMENT_TIMEOUT_MS", 5000),
            max_body_bytes=_env_int("ENERGY_MAX_BODY_BYTES", 8 * 1024 * 1024),
            max_batch_items=_env_int("ENERGY_MAX_BATCH_ITEMS", 10_000),
            earliest_reading=_env_moment(
                "ENERGY_EARLIEST_READING", datetime(2000, 1, 1, tzinfo=UTC)
            ),
            future_tolerance_s=_env_int("ENERGY_FUTURE_TOLERANCE_SECONDS", 300),
            log_level=os.environ.get("ENERGY_LOG_LEVEL", "info"),
            projector_batch_size=_env_int("ENERGY_PROJECTOR_BATCH_SIZE", 5000),
            projector_poll_seconds=_env_int("ENERGY_PROJECTOR_POLL_MS", 1000) / 1000,
            projector_linger_seconds=_env_int("ENERGY_PROJECTOR_LINGER_MS", 20) / 1000,
            fleet_refresh_seconds=_env_float("ENERGY_FLEET_REFRESH_SECONDS", 60.0),
            ledger_key=_secret("ENERGY_LEDGER_KEY", data_dir / "ledger.key"),
            ledger_every=_env_int("ENERGY_LEDGER_EVERY", 1000),
            auth=_env_switch("ENERGY_AUTH", True),
            token_key=_secret("ENERGY_TOKEN_KEY", data_dir / "token.key"),
            rate_per_credential=_env_float("ENERGY_RATE_PER_CREDENTIAL", 100.0),
            rate_burst=_env_float("ENERGY_RATE_BURST", 200.0),
            max_json_depth=_env_int("ENERGY_MAX_JSON_DEPTH", MAX_DEPTH),
            api_role=os.environ.get("ENERGY_API_ROLE", "energy_api"),
            projector_role=os.environ.get("ENERGY_PROJECTOR_ROLE", "energy_projector"),
            group_commit=_env_switch("ENERGY_GROUP_COMMIT", True),
            # One commit in flight per worker lets the next batch grow while it flushes:
            # measured, 15-20 % more single readings per second than two (README).
            group_commit_flushers=_env_int("ENERGY_GROUP_COMMIT_FLUSHERS", 1),
            read=ReadSettings(
                max_span=timedelta(days=_env_int("ENERGY_MAX_RANGE_DAYS", 31)),
                default_page=_env_int("ENERGY_PAGE_SIZE", 100),
                max_page=_env_int("ENERGY_MAX_PAGE_SIZE", 1000),
                max_wait=_env_int("ENERGY_READ_WAIT_MS", 2000) / 1000,
                low_threshold=_env_float("ENERGY_LOW_EFFICIENCY", DEFAULT_LOW_THRESHOLD),
                stale_after=timedelta(minutes=_env_int("ENERGY_STALE_MINUTES", 15)),
            ),
        )

    @property
    def rules(self) -> TimeRules:
        return TimeRules(
            earliest=self.earliest_reading,
            future_tolerance=timedelta(seconds=self.future_tolerance_s),
        )

    def projections(self) -> dict[str, Projection]:
        """Every projection by name; the ledger only when a ledger key is configured."""
        if self.ledger_key is None:
            return dict(PROJECTIONS)
        return with_ledger(self.ledger_key, every=self.ledger_every)

    def require_ledger_key(self) -> bytes:
        if self.ledger_key is None:
            raise click.UsageError(
                "ENERGY_LEDGER_KEY is not set: the ledger cannot be signed or checked"
            )
        return self.ledger_key

    def require_token_key(self) -> bytes:
        if self.token_key is None:
            raise click.UsageError(
                "ENERGY_TOKEN_KEY is not set: tokens cannot be checked (or set ENERGY_AUTH=off)"
            )
        return self.token_key

    def session_options(self, role: str, *, timeout: bool = True) -> str:
        """libpq ``options`` of a session: the role it acts as and, for the API's, the
        statement timeout (a projector's batch or a rebuild may take longer)."""
        options = [f"-c statement_timeout={self.statement_timeout_ms}"] if timeout else []
        options += [f"-c role={role}"] if role else []
        return " ".join(options)

    def require_database_url(self) -> str:
        """``DATABASE_URL``, or else the embedded PostgreSQL that ``energy up`` keeps in the
        data folder (started if it is not running), so that every command works beside it."""
        if self.database_url is not None:
            return self.database_url
        if (self.data_dir / "pgdata" / "PG_VERSION").is_file():
            return start_embedded_database(self.data_dir, stop_at_exit=False)
        raise click.UsageError("DATABASE_URL is not set (or use `energy up` for a local one)")


def open_pool(
    settings: Settings, *, name: str, size: int | None = None, url: str | None = None
) -> ConnectionPool[Any]:
    """A pool of API sessions: acting as the API's database role (ENERGY_API_ROLE), giving
    up on any statement after the configured timeout."""
    return ConnectionPool(**_pool_arguments(settings, name=name, size=size, url=url), open=True)


def _pool_arguments(
    settings: Settings, *, name: str, size: int | None, url: str | None
) -> dict[str, Any]:
    """What every pool of API sessions is made with, synchronous or not."""
    return {
        "conninfo": url or settings.require_database_url(),
        "min_size": 1,
        "max_size": size or settings.pool_size,
        "timeout": 5.0,
        "name": name,
        "kwargs": {
            "options": settings.session_options(settings.api_role),
            "application_name": f"energy-{name}",
        },
    }


def readiness_probe(pool: ConnectionPool[Any]) -> Readiness:
    try:
        with pool.connection(timeout=2.0) as conn:
            pending = migrations.pending(conn)
    except (psycopg.Error, OSError) as exc:
        return Readiness(ready=False, detail=f"database unreachable: {type(exc).__name__}")
    except migrations.MigrationError as exc:
        return Readiness(ready=False, detail=str(exc))
    if pending:
        return Readiness(
            ready=False,
            detail=f"{len(pending)} migration(s) not applied",
            pending_migrations=tuple(pending),
        )
    return Readiness(ready=True, detail="database reachable, schema up to date")


def utc_now() -> datetime:
    return datetime.now(UTC)


_OPEN_POOLS: list[ConnectionPool[Any]] = []
_CLOSE_AT_EXIT: list[Callable[[], None]] = []  # before the pools: group commits flush


class Lifespan:
    """ASGI lifespan of one worker: at startup its thread pool for blocking work (reads, the
    rarer writes) and its asynchronous read connections, opened in the worker's own event
    loop; at shutdown, queued group commits flushed and every pool closed."""

    def __init__(self, threads: int, async_reads: AsyncReadPool) -> None:
        self._threads, self._async_reads = threads, async_reads

    async def process_startup(self, scope: object, event: object) -> None:
        executor = ThreadPoolExecutor(self._threads, thread_name_prefix="api")
        asyncio.get_running_loop().set_default_executor(executor)
        await self._async_reads.open()

    async def process_shutdown(self, scope: object, event: object) -> None:
        await self._async_reads.close()
        await asyncio.to_thread(_close_pools)


def asgi() -> falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response]:
    """The ASGI app for gunicorn's uvicorn workers (``main:asgi()``); called in each worker,
    after the fork."""
    settings = Settings.from_env()
    key = settings.require_token_key() if settings.auth else b""
    if not settings.auth:
        log.warning(AUTH_OFF)
    pool = open_pool(settings, name="api")
    # Dashboards may read from a streaming replica; read-your-writes waits cover its lag.
    reads = open_pool(
        settings, name="api-read", size=settings.read_pool_size, url=settings.read_database_url
    )
    _OPEN_POOLS.extend((pool, reads))
    # Opened in the worker's event loop, at its lifespan startup (see Lifespan).
    async_reads = AsyncReadPool(
        AsyncConnectionPool(
            **_pool_arguments(
                settings,
                name="api-read-async",
                size=settings.read_pool_size,
                url=settings.read_database_url,
            ),
            open=False,
        )
    )
    credentials = Credentials(pool, key)

    def lookup(token_id: str) -> StoredCredential | None:
        # The primary, never a replica: a revocation must count at once.
        with translated_errors(), pool.connection() as conn:
            return find_credential(conn, token_id)

    # Verified credentials are kept in memory while a listener hears every revocation
    # (measured: the lookup was 38 % of an API worker's time under load).
    credentials_cache = CachedCredentials(lookup)
    listener = RevocationListener(
        lambda: psycopg.connect(
            settings.require_database_url(), options=settings.session_options(settings.api_role)
        ),
        credentials_cache,
    )
    _CLOSE_AT_EXIT.append(listener.close)

    store: EventStore | GroupCommitStore = EventStore(pool, upcast=CODEC.upcast)
    if settings.group_commit:
        # Concurrent requests of this worker share commits (see eventstore/group_commit.py).
        store = GroupCommitStore(pool, upcast=CODEC.upcast, flushers=settings.group_commit_flushers)
        _CLOSE_AT_EXIT.append(store.close)
    deps = Dependencies(
        store=store,
        reads=ReadPool(reads),
        clock=utc_now,
        readiness=lambda: readiness_probe(pool),
        rules=settings.rules,
        limits=Limits(
            max_body_bytes=settings.max_body_bytes, max_batch_items=settings.max_batch_items
        ),
        read=settings.read,
        projections=tuple(settings.projections()),
        security=Security(
            enabled=settings.auth,
            key=key,
            lookup=credentials_cache,
            peek=credentials_cache.cached,
            evict=credentials_cache.evict,
            record_refusal=credentials.record_refusal,
            # Each worker enforces its share of the per-credential rate.
            rate=settings.rate_per_credential / max(settings.workers, 1),
            burst=max(settings.rate_burst / max(settings.workers, 1), 1.0),
            max_json_depth=settings.max_json_depth,
        ),
        credentials=credentials,
        async_reads=async_reads,
    )
    app = create_app(deps)
    app.add_middleware(Lifespan(settings.threads, async_reads))
    return app


def _close_pools(*_: object) -> None:
    while _CLOSE_AT_EXIT:
        _CLOSE_AT_EXIT.pop()()
    while _OPEN_POOLS:
        _OPEN_POOLS.pop().close()


# The cyclic garbage collector, set for a long-running server. With Python's defaults
# (700, 10, 10) it took 21 % of an API worker's CPU under batched ingest (bench.run
# batch-1000, measured with gc.callbacks): a batch's thousands of objects, alive while it
# commits, outlived the youngest collections, and each full collection walked every module,
# class and function loaded at start. Frozen, those are never walked again; and the youngest
# generation collected after 5,000 new objects instead of 700, so that few of a request's
# objects are still alive to be promoted. The collector then took 3.5 % of the CPU (0.32 of
# 9.1 s), and a batch of 1,000 readings 13.7 instead of 16.2 ms of a worker's. Full
# collections still run (after every 100 young ones), so that no reference cycle is kept
# for long.
COLLECTOR_THRESHOLDS = (5_000, 10, 10)


def settle_collector() -> None:
    """Set the garbage collector for serving, once the process has loaded what it keeps:
    everything alive now is frozen (left out of every later collection)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


def _tcp_address(bind: str) -> tuple[str, int] | None:
    """``(host, port)`` of a gunicorn bind, ``None`` for a unix socket or a file descriptor."""
    from gunicorn.util import parse_address

    address = parse_address(bind)
    return address if isinstance(address, tuple) else None


def gunicorn_options(settings: Settings, *, bind: str, workers: int) -> dict[str, Any]:
    """Gunicorn settings: uvicorn workers (an event loop each, uvloop and httptools), the app
    loaded after the fork so that each worker owns its pools.

    Each worker listens on a socket of its own (``SO_REUSEPORT``, gunicorn's ``reuse_port``),
    and the kernel spreads new connections over them by a hash of their addresses. On one
    shared socket the workers raced to accept, and the one that woke first took them in
    bursts: a batch benchmark's eight keep-alive connections all went to one worker, whose
    core then did all the API's work (45,793 readings/s against 50,734-56,826 with the
    connections spread). The cost: connections still waiting in a stopping worker's queue
    are reset, as they are when the server stops (clients retry; a retried reading is a
    duplicate). Not for a unix socket, or port 0 (each worker would get a port of its own).
    """
    address = _tcp_address(bind)
    return {
        "bind": bind,
        "workers": workers,
        "worker_class": "web.worker.Worker",
        "reuse_port": address is not None and address[1] != 0,
        "preload_app": False,
        "graceful_timeout": 20,
        "timeout": 30,
        "keepalive": 5,
        "loglevel": settings.log_level,
        "accesslog": None,
        "post_worker_init": lambda worker: settle_collector(),
        "worker_exit": lambda server, worker: _close_pools(),
    }


def refuse_taken_address(bind: str) -> None:
    """Fail at once when something already listens on ``bind``. Workers that each listen with
    ``SO_REUSEPORT`` would otherwise share the port with another server of the same user
    (an old one still running, say) instead of failing: the kernel would spread the
    connections over both. A bind without it is refused while anything listens there."""
    address = _tcp_address(bind)
    if address is None:
        return
    from gunicorn.util import is_ipv6

    family = socket.AF_INET6 if is_ipv6(address[0]) else socket.AF_INET  # as gunicorn binds
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
        try:
            probe.bind(address)
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {bind}: {exc.strerror}") from exc


def run_gunicorn(options: dict[str, Any]) -> None:
    from gunicorn.app.base import BaseApplication

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response]:
            return asgi()

    master = os.getpid()
    try:
        Application().run()
    except BaseException as exc:
        # Gunicorn's workers are forks of this process: a worker that is done unwinds
        # through the caller's stack (``energy up`` stopping its projector in a finally)
        # and atexit handlers (pgserver stopping the embedded database). Gunicorn has
        # finished with it by now: it leaves at once, touching nothing of its parent's.
        if os.getpid() != master:
            os._exit(exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 1)
        raise
    if os.getpid() != master:
        os._exit(0)


AUTH_OFF = (
    "WARNING: ENERGY_AUTH=off: authentication is OFF. Anyone who reaches the port can write"
    " readings for any device and read everything. For local experiments only."
)
NO_CREDENTIALS = "SELECT NOT EXISTS (SELECT 1 FROM credentials)"


def first_operator_token(settings: Settings) -> None:
    """On a database without any token, create an operator token and print it, once."""
    url = settings.require_database_url()
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(NO_CREDENTIALS).fetchone()
    if not (row and row[0]):
        return
    credentials, pool = _credentials(settings)
    with pool:
        event, token = credentials.issue(
            {"identity": "first-operator", "role": Role.OPERATOR.value},
            issued_by="energy up",
            now=utc_now(),
        )
    click.secho(
        f"operator token (shown once; keep it, or make others: energy tokens create):\n{token}\n"
        f'try: curl -H "Authorization: Bearer {token}" localhost:3000/v1/fleet/summary',
        fg="green",
    )


def secret_file(data_dir: Path, name: str) -> Path:
    """A random secret in the data folder, made (readable by the owner only) if missing."""
    path = data_dir / name
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32) + "\n")
    return path


def start_embedded_database(data_dir: Path, *, stop_at_exit: bool = True) -> str:
    """Start (or reuse) the embedded PostgreSQL in ``data_dir``; return its URL. ``energy
    up`` stops it when it exits; another command leaves it as it found it."""
    # pgserver narrates every pg_ctl call at INFO; its failures still come through.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # Where XDG_RUNTIME_DIR is unset (containers, CI) platformdirs says so on every run.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import pgserver

        server = pgserver.get_server(  # type: ignore[attr-defined]  # exported, undeclared
            data_dir.resolve() / "pgdata", cleanup_mode="stop" if stop_at_exit else None
        )
    url: str = server.get_uri()
    return url


# ----------------------------------------------------------------------------- CLI


@click.group()
def cli() -> None:
    """Energy telemetry engine: ingest meter and vehicle readings, serve efficiency analytics."""
    logging.basicConfig(
        level=os.environ.get("ENERGY_LOG_LEVEL", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@cli.command()
@click.option("--check", is_flag=True, help="apply nothing; exit 1 if any migration is pending")
def migrate(check: bool) -> None:
    """Apply pending schema migrations (safe to run twice, and from two processes at once)."""
    settings = Settings.from_env()
    if check:
        with psycopg.connect(settings.require_database_url(), connect_timeout=5) as conn:
            waiting = migrations.pending(conn)
        click.echo(
            f"{len(waiting)} migration(s) pending" + (": " + ", ".join(waiting) if waiting else "")
        )
        raise SystemExit(1 if waiting else 0)
    applied = migrations.migrate(settings.require_database_url())
    click.echo(
        f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else "")
    )


@cli.command()
@click.option("--bind", default=None, help="HOST:PORT to listen on [ENERGY_BIND, 127.0.0.1:3000]")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="worker processes [ENERGY_WORKERS, CPU count]",
)
def serve(bind: str | None, workers: int | None) -> None:
    """Run the HTTP API under gunicorn (the database must already be migrated)."""
    settings = Settings.from_env()
    settings.require_database_url()
    if settings.auth:
        settings.require_token_key()
    else:
        click.secho(AUTH_OFF, fg="red", bold=True, err=True)
    bind = bind or settings.bind
    refuse_taken_address(bind)
    run_gunicorn(gunicorn_options(settings, bind=bind, workers=workers or settings.workers))


@cli.command()
@click.option(
    "--only",
    multiple=True,
    type=click.Choice(sorted(NAMES)),
    help="run only these projections (repeatable); default: all",
)
def project(only: tuple[str, ...]) -> None:
    """Run the projectors: keep every read model and the audit ledger up to date."""
    settings = Settings.from_env()
    url = settings.require_database_url()
    if LEDGER in only:
        settings.require_ledger_key()
    available = settings.projections()
    if settings.ledger_key is None:
        log.warning("ENERGY_LEDGER_KEY is not set: the audit ledger is not kept")
    chosen = [available[name] for name in only] or list(available.values())
    # The fleet refresh reads every read model; it runs with the full set only.
    periodic = [] if only else [FleetEfficiencyRefresh(interval=settings.fleet_refresh_seconds)]
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("projecting %s", ", ".join(p.name for p in chosen))
    Projector(
        lambda: psycopg.connect(
            url,
            application_name=PROJECTOR_APPLICATION,
            options=settings.session_options(settings.projector_role, timeout=False),
        ),
        chosen,
        periodic=periodic,
        batch_size=settings.projector_batch_size,
        poll_interval=settings.projector_poll_seconds,
        linger=settings.projector_linger_seconds,
    ).run(stop)
    log.info("projector stopped")


@cli.group()
def projections() -> None:
    """Inspect the projections (the read models built from the event log)."""


@projections.command("status")
@click.option(
    "--check",
    is_flag=True,
    help="exit 1 unless a projector is attached (for health checks)",
)
def projections_status(check: bool) -> None:
    """Each projection's checkpoint, how far behind it is, and whether it is caught up,
    running or stalled (and why)."""
    settings = Settings.from_env()
    with psycopg.connect(
        settings.require_database_url(), autocommit=True, connect_timeout=5
    ) as conn:
        sessions = projector_sessions(conn)
        rows = statuses(conn, list(settings.projections()), sessions=sessions)
    for row in rows:
        click.echo(
            f"{row.name:<20} {row.state:<10} position {row.checkpoint.position:>12}"
            f"  {row.behind:>10} events / {row.seconds_behind:>9.1f} s behind"
            f"  updated {_when(row.updated_at)}"
            + (f"\n{'':<20} {row.reason}" if row.reason else "")
        )
    click.echo(f"projector sessions attached: {sessions}")
    if check and sessions == 0:
        raise SystemExit(1)


@projections.command("rebuild")
@click.argument("name", type=click.Choice(sorted(NAMES)))
@click.option("--restart", is_flag=True, help="discard an interrupted rebuild, start over")
def projections_rebuild(name: str, restart: bool) -> None:
    """Rebuild NAME from position zero into new tables while the current ones keep serving,
    then switch readers to them in one transaction. An interrupted rebuild resumes."""
    settings = Settings.from_env()
    url = settings.require_database_url()
    if name == LEDGER:
        settings.require_ledger_key()
    projection = settings.projections()[name]
    began = time.monotonic()
    with _progress() as bar:
        try:
            outcome = rebuild(
                lambda: psycopg.connect(url, application_name="energy-rebuild"),
                projection,
                batch_size=settings.projector_batch_size,
                restart=restart,
                progress=_tracker(bar, f"rebuild {name}", None),
            )
        except RebuildBusy as exc:
            raise click.ClickException(str(exc)) from None
    elapsed = time.monotonic() - began
    click.echo(
        f"rebuilt {name}{' (resumed)' if outcome['resumed'] else ''}: {outcome['applied']} events"
        f" in {elapsed:.1f} s ({outcome['applied'] / max(elapsed, 1e-9):,.0f} events/s),"
        " readers switched to the new tables"
    )


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "never"


def _selection_options(command: Callable[..., None]) -> Callable[..., None]:
    """The filters ``energy events export`` shares with ``GET /v1/events``."""
    for option in reversed(
        [
            click.option("--after", default=None, help="resume after TRANSACTIONID:POSITION"),
            click.option("--stream", "streams", multiple=True, help="only this stream"),
            click.option("--device", "devices", multiple=True, help="only this device's streams"),
            click.option("--type", "types", multiple=True, help="only this event type"),
            click.option("--from", "received_from", default=None, help="received at or after"),
            click.option("--to", "received_to", default=None, help="received before"),
            click.option("--limit", type=click.IntRange(min=1), default=None),
        ]
    ):
        command = option(command)
    return command


def _moment_option(name: str, raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise click.BadParameter(f"not an ISO-8601 date-time: {raw!r}", param_hint=name) from None
    if moment.tzinfo is None:
        raise click.BadParameter("must carry a UTC offset, e.g. ...Z", param_hint=name)
    return moment


def _selection(
    after: str | None,
    streams: tuple[str, ...],
    devices: tuple[str, ...],
    types: tuple[str, ...],
    received_from: str | None,
    received_to: str | None,
    limit: int | None,
) -> Selection:
    try:
        checkpoint = Checkpoint.parse(after) if after else START
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--after") from None
    chosen = [*streams, *(stream for device in devices for stream in device_streams(device))]
    return Selection(
        after=checkpoint,
        streams=tuple(chosen) or None,
        event_types=types or None,
        received_from=_moment_option("--from", received_from),
        received_to=_moment_option("--to", received_to),
        limit=limit,
    )


def _progress() -> Progress:
    """A progress bar on stderr (shown only on a terminal): count, rate and time left."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} events/s"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not sys.stderr.isatty(),
        transient=True,
    )


def _tracker(bar: Progress, description: str, total: int | None) -> Callable[..., None]:
    """A task on ``bar``, updated by calling it with the events done so far (and the
    total, when it becomes known); it shows the rate since the task began."""
    task = bar.add_task(description, total=total, rate=0)
    began = time.monotonic()

    def show(done: int, total: int | None = None) -> None:
        rate = round(done / max(time.monotonic() - began, 1e-9))
        bar.update(task, completed=done, total=total, rate=f"{rate:,}")

    return show


@cli.group()
def events() -> None:
    """The event log itself: export it, verify it against the audit ledger."""


@events.command("export")
@_selection_options
@click.option("--format", "fmt", type=click.Choice(["ndjson", "csv"]), default="ndjson")
@click.option("--out", type=click.File("w"), default="-", help="file to write [stdout]")
def events_export(fmt: str, out: Any, **filters: Any) -> None:
    """Write the log in commit-safe order (as stored, never upcast) as NDJSON or CSV."""
    selection = _selection(**filters)
    url = Settings.from_env().require_database_url()
    with psycopg.connect(url, autocommit=True) as conn, _progress() as bar:
        head = conn.execute(HEAD).fetchone()
        show = _tracker(bar, "export", selection.limit or (head[0] if head else None))
        written = 0
        stream = iter_events(conn, selection)
        lines = ndjson(stream) if fmt == "ndjson" else csv_lines(stream)
        for line in lines:
            out.write(line.decode() if isinstance(line, bytes) else line)
            written += 1
            if written % 10_000 == 0:
                show(written)
    exported = written - (1 if fmt == "csv" else 0)
    click.echo(f"exported {exported} events", err=True)


@events.command("verify")
@click.option(
    "--checkpoints",
    "exported",
    type=click.File("r"),
    default=None,
    help="also compare with checkpoints exported earlier (energy ledger export)",
)
def events_verify(exported: Any) -> None:
    """Replay the log, recompute the audit chain, compare it with the ledger's entries and
    signed checkpoints; print OK or the first position where it stops matching (exit 1)."""
    settings = Settings.from_env()
    key, url = settings.require_ledger_key(), settings.require_database_url()
    outside = list(read_checkpoints(exported)) if exported is not None else []
    began = time.monotonic()
    with (
        psycopg.connect(url, autocommit=True) as log_conn,
        psycopg.connect(url, autocommit=True) as ledger_conn,
        _progress() as bar,
    ):
        head = log_conn.execute(HEAD).fetchone()
        show = _tracker(bar, "verify", head[0] if head else None)
        stored = ledger_checkpoints(ledger_conn)
        result = verify(log_conn, ledger_conn, key, stored, outside, progress=show)
    elapsed = time.monotonic() - began
    summary = (
        f"{result.events} events read, {result.chained} chained by the ledger,"
        f" {result.checkpoints} checkpoints compared in {elapsed:.1f} s"
        f" ({result.events / max(elapsed, 1e-9):,.0f} events/s)"
    )
    if result.mismatch is None:
        click.echo(f"OK: {summary}")
        return
    mismatch = result.mismatch
    click.echo(
        f"MISMATCH ({mismatch.kind}) at position {mismatch.position} (event #{mismatch.seq}):"
        f" {mismatch.detail}\n{summary}"
    )
    raise SystemExit(1)


@cli.group()
def ledger() -> None:
    """The audit ledger's signed checkpoints."""


@ledger.command("export")
@click.option("--out", type=click.File("w"), default="-", help="file to write [stdout]")
def ledger_export(out: Any) -> None:
    """Write every signed checkpoint as NDJSON, to keep outside the database."""
    url = Settings.from_env().require_database_url()
    with psycopg.connect(url, autocommit=True) as conn:
        found = ledger_checkpoints(conn)
    write_checkpoints(found, out)
    click.echo(f"exported {len(found)} checkpoints", err=True)


def _credentials(settings: Settings) -> tuple[Credentials, ConnectionPool[Any]]:
    """Token management as the owner (the CLI acts with the database's credentials)."""
    pool = ConnectionPool(settings.require_database_url(), min_size=1, max_size=2, open=True)
    return Credentials(pool, settings.require_token_key()), pool


def _cli_identity() -> str:
    return f"cli:{getpass.getuser()}"


@cli.group()
def tokens() -> None:
    """Bearer tokens: create, list, revoke (each creation and revocation is an event)."""


@tokens.command("create")
@click.option("--identity", required=True, help="who holds it: a device, gateway, dashboard")
@click.option(
    "--role", required=True, type=click.Choice([role.value for role in Role]), help="what it may do"
)
@click.option("--device", "devices", multiple=True, help="a device it may write for (repeat)")
def tokens_create(identity: str, role: str, devices: tuple[str, ...]) -> None:
    """Create a token and print it, once: only a keyed hash of it is stored."""
    settings = Settings.from_env()
    credentials, pool = _credentials(settings)
    with pool:
        try:
            event, token = credentials.issue(
                {"identity": identity, "role": role, "devices": list(devices)},
                issued_by=_cli_identity(),
                now=utc_now(),
            )
        except Invalid as exc:
            message = "; ".join(f"{e.field}: {e.message}" for e in exc.errors)
            raise click.UsageError(message) from None
    click.echo(f"token {event.token_id} for {event.identity} ({event.role}), shown once:")
    click.echo(token)


@tokens.command("list")
@click.option("--all", "everything", is_flag=True, help="revoked tokens too")
def tokens_list(everything: bool) -> None:
    """The tokens (their public ids, never their secrets)."""
    url = Settings.from_env().require_database_url()
    with psycopg.connect(url, autocommit=True) as conn:
        found = list_tokens(conn, include_revoked=everything)
    for info in found:
        state = f"revoked {_when(info.revoked_at)}" if info.revoked_at else "live"
        bound = f" devices {','.join(info.devices)}" if info.devices else ""
        click.echo(
            f"{info.token_id}  {info.role:<8} {info.identity:<30} {state:<30}"
            f" created {_when(info.created_at)} by {info.created_by}{bound}"
        )


@tokens.command("revoke")
@click.argument("token_id")
def tokens_revoke(token_id: str) -> None:
    """Revoke a token at once (by its public id)."""
    settings = Settings.from_env()
    credentials, pool = _credentials(settings)
    with pool:
        revoked = credentials.revoke(token_id, revoked_by=_cli_identity(), now=utc_now())
    if revoked is None:
        raise click.ClickException(f"no live token {token_id}")
    click.echo(f"revoked {token_id}")


class Supervised:
    """A child process kept running: restarted (after a pause) whenever it exits unbidden.

    The child gets a session of its own, so a Ctrl-C meant for the API does not reach it:
    it stops when ``stop`` says so, after the API has drained.
    """

    def __init__(self, command: list[str], name: str) -> None:
        self._command, self._name = command, name
        self._stopping = threading.Event()
        self._process = self._start()
        self._thread = threading.Thread(target=self._watch, name=f"watch-{name}", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int:
        return self._process.pid

    def _watch(self) -> None:
        while not self._stopping.is_set():
            code = self._process.wait()
            if self._stopping.wait(2.0):
                return
            log.warning("%s exited with %s; restarting it", self._name, code)
            self._process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self._command, start_new_session=True)

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self._process.terminate()
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()


@cli.command()
@click.option("--bind", default=None, help="HOST:PORT to listen on [ENERGY_BIND, 127.0.0.1:3000]")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="worker processes [ENERGY_WORKERS, CPU count]",
)
def up(bind: str | None, workers: int | None) -> None:
    """Everything on one machine: database (embedded unless DATABASE_URL), migrations,
    the projector and the API."""
    settings = Settings.from_env()
    refuse_taken_address(bind or settings.bind)  # before anything is started
    if settings.database_url is None:
        url = start_embedded_database(settings.data_dir)
        os.environ["DATABASE_URL"] = url
        click.echo(f"embedded PostgreSQL running, data in {settings.data_dir.resolve() / 'pgdata'}")
        settings = attrs.evolve(settings, database_url=url)
    applied = migrations.migrate(settings.require_database_url())
    click.echo(f"migrations: {len(applied)} applied, schema up to date")
    # Keys not given are made once and kept in the data folder, where every command (the
    # projector and the API workers too) finds them: ``Settings`` reads them from there.
    for what, variable, given in (
        ("ledger", "ENERGY_LEDGER_KEY", settings.ledger_key),
        ("token", "ENERGY_TOKEN_KEY", settings.token_key),
    ):
        if given is None:
            key_file = secret_file(settings.data_dir, f"{what}.key")
            click.echo(f"{what} key: {key_file} (set {variable} to use your own)")
    settings = Settings.from_env()
    if settings.auth:
        first_operator_token(settings)
    else:
        click.secho(AUTH_OFF, fg="red", bold=True, err=True)
    bind = bind or settings.bind
    projector = Supervised([sys.executable, "-m", "main", "project"], "projector")
    click.echo(f"projector running (pid {projector.pid}), restarted if it stops")
    click.echo(f"API on http://{bind}  (try: curl http://{bind}/health, http://{bind}/ready)")
    try:
        run_gunicorn(gunicorn_options(settings, bind=bind, workers=workers or settings.workers))
    finally:
        projector.stop()


if __name__ == "__main__":
    cli()
