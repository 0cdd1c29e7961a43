"""Composition root: settings from the environment, pools, ``wsgi()`` for gunicorn, the CLI.

Nothing imports this module; it imports and wires everything else.
"""

from __future__ import annotations

import logging
import os
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
from domain.rules import TimeRules
from eventstore import EventStore
from web.app import create_app
from web.context import Dependencies, Limits, Readiness

log = logging.getLogger("energy")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise click.UsageError(f"{name} must be an integer, not {raw!r}") from None


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

    @classmethod
    def from_env(cls) -> Settings:
        cpus = os.cpu_count() or 1
        threads = _env_int("ENERGY_THREADS", 8)
        return cls(
            database_url=os.environ.get("DATABASE_URL") or None,
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


def open_pool(settings: Settings, *, name: str, size: int | None = None) -> ConnectionPool[Any]:
    """A connection pool whose sessions give up on any statement after the configured timeout."""
    size = size or settings.pool_size
    return ConnectionPool(
        settings.require_database_url(),
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
    _OPEN_POOLS.append(pool)
    deps = Dependencies(
        store=EventStore(pool),
        clock=utc_now,
        readiness=lambda: readiness_probe(pool),
        rules=settings.rules,
        limits=Limits(
            max_body_bytes=settings.max_body_bytes, max_batch_items=settings.max_batch_items
        ),
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
def migrate() -> None:
    """Apply pending schema migrations (safe to run twice, and from two processes at once)."""
    settings = Settings.from_env()
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
@click.option("--bind", default=None, help="HOST:PORT to listen on [ENERGY_BIND, 127.0.0.1:3000]")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="worker processes [ENERGY_WORKERS, CPU count]",
)
def up(bind: str | None, workers: int | None) -> None:
    """Everything on one machine: database (embedded unless DATABASE_URL), migrations, API."""
    settings = Settings.from_env()
    if settings.database_url is None:
        url = start_embedded_database(settings.data_dir)
        os.environ["DATABASE_URL"] = url
        click.echo(f"embedded PostgreSQL running, data in {settings.data_dir.resolve() / 'pgdata'}")
        settings = attrs.evolve(settings, database_url=url)
    applied = migrations.migrate(settings.require_database_url())
    click.echo(f"migrations: {len(applied)} applied, schema up to date")
    bind = bind or settings.bind
    click.echo(f"API on http://{bind}  (try: curl http://{bind}/health, http://{bind}/ready)")
    run_gunicorn(gunicorn_options(settings, bind=bind, workers=workers or settings.workers))


if __name__ == "__main__":
    cli()
