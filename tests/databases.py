"""Where the tests' PostgreSQL comes from, and cheap fresh databases cloned from a template.

Order of preference: ``DATABASE_URL`` or libpq's ``PG*`` variables when given; else a server
answering on 127.0.0.1:5432; else an embedded server (``pgserver``) in a temporary folder.
Every test run creates its own databases (random names) and drops them at the end.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import migrations

LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _answers(conninfo: str) -> bool:
    try:
        with psycopg.connect(conninfo, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@contextmanager
def server() -> Iterator[str]:
    """A conninfo for a maintenance database on a server the tests may create databases on."""
    given = os.environ.get("DATABASE_URL")
    if given:
        yield given
        return
    if any(os.environ.get(name) for name in ("PGHOST", "PGPORT", "PGDATABASE", "PGSERVICE")):
        yield ""
        return
    if _answers(LOCAL):
        yield LOCAL
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="energy-test-pg-") as folder:
        embedded = pgserver.get_server(folder, cleanup_mode="delete")
        try:
            yield embedded.get_uri()
        finally:
            embedded.cleanup()


def with_database(conninfo: str, name: str) -> str:
    return make_conninfo(conninfo, dbname=name)


class Databases:
    """Creates a migrated template once, then clones it for every database a test asks for."""

    def __init__(self, conninfo: str) -> None:
        self.admin = conninfo
        self.template = f"energy_tpl_{uuid.uuid4().hex[:12]}"
        self._created: list[str] = []
        self._execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.template)))
        self._created.append(self.template)
        migrations.migrate(with_database(conninfo, self.template))

    def _execute(self, statement: sql.Composable) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(statement)

    def create(self, prefix: str = "energy_test") -> str:
        """A new database with every migration applied; returns its conninfo."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self._execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(self.template)
            )
        )
        self._created.append(name)
        return with_database(self.admin, name)

    def clone(self, conninfo: str) -> str:
        """A copy of the database ``conninfo`` names (nobody may be connected to it)."""
        name = f"energy_clone_{uuid.uuid4().hex[:12]}"
        self._execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(database_name(conninfo))
            )
        )
        self._created.append(name)
        return with_database(self.admin, name)

    def create_empty(self) -> str:
        """A new database with no schema at all (for migration tests)."""
        name = f"energy_empty_{uuid.uuid4().hex[:12]}"
        self._execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._created.append(name)
        return with_database(self.admin, name)

    def drop_all(self) -> None:
        for name in reversed(self._created):
            self._execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        self._created.clear()


def database_name(conninfo: str) -> str:
    return conninfo_to_dict(conninfo).get("dbname", "")
