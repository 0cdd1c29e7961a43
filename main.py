"""Composition root: settings from the environment, pools, ``wsgi()`` for gunicorn, the CLI.

Nothing imports this module; it imports and wires everything else.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import click
import falcon
import psycopg
from attrs import frozen
from psycopg_pool import ConnectionPool

import migrations
from commands.ingest import CODEC
from domain.efficiency import DEFAULT_LOW_THRESHOLD
from domain.rules import TimeRules
from eventstore import EventStore
from projections.catalogue import ALL as ALL_PROJECTIONS
from projections.catalogue import BY_NAME as PROJECTIONS
from projections.fleet_efficiency import FleetEfficiencyRefresh
from projections.runtime import Projector
from projections.status import PROJECTOR_APPLICATION, projector_sessions, statuses
from queries.pool import ReadPool
from web.app import create_app
from web.context import Dependencies, Limits, Readiness, ReadSettings

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
    read: ReadSettings

    @classmethod
    def from_env(cls) -> Settings:
        cpus = os.cpu_count() or 1
        threads = _env_int("ENERGY_THREADS", 8)
        return cls(
            database_url=os.environ.get("DATABASE_URL") or None,
            read_database_url=os.environ.get("ENERGY_READ_DATABASE_URL") or None,
            data_dir=Path(os.environ.get("ENERGY_DATA_DIR", ".energy")),
            bind=os.environ.get("ENERGY_BIND", "127.0.0.1:3000"),
            workers=_env_int("ENERGY_WORKERS", cpus),
            threads=threads,
            pool_size=_env_int("ENERGY_POOL_SIZE", threads),
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

    def require_database_url(self) -> str:
        if self.database_url is None:
            raise click.UsageError("DATABASE_URL is not set (or use `energy up` for a local one)")
        return self.database_url


def open_pool(
    settings: Settings, *, name: str, size: int | None = None, url: str | None = None
) -> ConnectionPool[Any]:
    """A connection pool whose sessions give up on any statement after the configured timeout."""
    size = size or settings.pool_size
    return ConnectionPool(
        url or settings.require_database_url(),
        min_size=1,
        max_size=size,
        timeout=5.0,
        name=name,
        kwargs={
            "options": f"-c statement_timeout={settings.statement_timeout_ms}",
            "application_name": f"energy-{name}",
        },
        open=True,
    )


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


def wsgi() -> falcon.App:
    """The WSGI app for gunicorn (``main:wsgi()``); called in each worker, after the fork."""
    settings = Settings.from_env()
    pool = open_pool(settings, name="api")
    # Dashboards may read from a streaming replica; read-your-writes waits cover its lag.
    reads = open_pool(settings, name="api-read", url=settings.read_database_url)
    _OPEN_POOLS.extend((pool, reads))
    deps = Dependencies(
        store=EventStore(pool, upcast=CODEC.upcast),
        reads=ReadPool(reads),
        clock=utc_now,
        readiness=lambda: readiness_probe(pool),
        rules=settings.rules,
        limits=Limits(
            max_body_bytes=settings.max_body_bytes, max_batch_items=settings.max_batch_items
        ),
        read=settings.read,
    )
    return create_app(deps)


def _close_pools(*_: object) -> None:
    while _OPEN_POOLS:
        _OPEN_POOLS.pop().close()


def gunicorn_options(settings: Settings, *, bind: str, workers: int) -> dict[str, Any]:
    """Gunicorn settings: threaded workers, app loaded after fork so each worker owns its pool."""
    return {
        "bind": bind,
        "workers": workers,
        "worker_class": "gthread",
        "threads": settings.threads,
        "preload_app": False,
        "graceful_timeout": 20,
        "timeout": 30,
        "keepalive": 5,
        "limit_request_line": 8190,
        "limit_request_fields": 100,
        "loglevel": settings.log_level,
        "accesslog": None,
        "worker_exit": lambda server, worker: _close_pools(),
    }


def run_gunicorn(options: dict[str, Any]) -> None:
    from gunicorn.app.base import BaseApplication

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> falcon.App:
            return wsgi()

    Application().run()


def start_embedded_database(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL in ``data_dir``; return its URL."""
    import pgserver

    # pgserver narrates every pg_ctl call at INFO; its failures still come through.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir.resolve() / "pgdata", cleanup_mode="stop")
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
    run_gunicorn(
        gunicorn_options(settings, bind=bind or settings.bind, workers=workers or settings.workers)
    )


@cli.command()
@click.option(
    "--only",
    multiple=True,
    type=click.Choice(sorted(PROJECTIONS)),
    help="run only these projections (repeatable); default: all",
)
def project(only: tuple[str, ...]) -> None:
    """Run the projectors: keep every read model up to date with the event log."""
    settings = Settings.from_env()
    url = settings.require_database_url()
    chosen = [PROJECTIONS[name] for name in only] or list(ALL_PROJECTIONS)
    # The fleet refresh reads every read model; it runs with the full set only.
    periodic = [] if only else [FleetEfficiencyRefresh(interval=settings.fleet_refresh_seconds)]
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("projecting %s", ", ".join(p.name for p in chosen))
    Projector(
        lambda: psycopg.connect(url, application_name=PROJECTOR_APPLICATION),
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
    """Each projection's checkpoint and how many events it has yet to apply."""
    url = Settings.from_env().require_database_url()
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        rows = statuses(conn, ALL_PROJECTIONS)
        sessions = projector_sessions(conn)
    for row in rows:
        state = "caught up" if row.caught_up else f"{row.behind} events behind"
        click.echo(
            f"{row.name:<20} position {row.checkpoint.position:>12}  {state:<24}"
            f" updated {row.updated_at.isoformat(timespec='seconds')}"
        )
    click.echo(f"projector sessions attached: {sessions}")
    if check and sessions == 0:
        raise SystemExit(1)


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
    if settings.database_url is None:
        url = start_embedded_database(settings.data_dir)
        os.environ["DATABASE_URL"] = url
        click.echo(f"embedded PostgreSQL running, data in {settings.data_dir.resolve() / 'pgdata'}")
        settings = attrs.evolve(settings, database_url=url)
    applied = migrations.migrate(settings.require_database_url())
    click.echo(f"migrations: {len(applied)} applied, schema up to date")
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
