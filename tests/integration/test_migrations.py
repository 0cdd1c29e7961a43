"""Migrations apply once, in order, from any number of processes at once."""

from __future__ import annotations

import multiprocessing

import psycopg
import pytest

import migrations
from tests.databases import Databases


def test_a_new_database_has_every_migration_pending_then_none(databases: Databases) -> None:
    url = databases.create_empty()
    names = [m.name for m in migrations.available()]
    with psycopg.connect(url) as conn:
        assert migrations.pending(conn) == names

    assert migrations.migrate(url) == names
    assert migrations.migrate(url) == []
    with psycopg.connect(url) as conn:
        assert migrations.pending(conn) == []
        recorded = [
            row[0] for row in conn.execute("SELECT name FROM schema_migrations ORDER BY version")
        ]
    assert recorded == names


def _migrate(url: str) -> list[str]:
    return migrations.migrate(url)


def test_two_processes_migrating_at_once_apply_each_file_exactly_once(databases: Databases) -> None:
    url = databases.create_empty()
    with multiprocessing.get_context("spawn").Pool(3) as workers:
        results = workers.map(_migrate, [url, url, url])

    applied = sorted(name for result in results for name in result)
    assert applied == sorted(m.name for m in migrations.available())


def test_a_migration_edited_after_it_was_applied_is_an_error(databases: Databases) -> None:
    url = databases.create()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(migrations.MigrationError, match="changed after it was applied"):
            migrations.pending(conn)
    with pytest.raises(migrations.MigrationError):
        migrations.migrate(url)


def test_migration_files_are_numbered_without_gaps() -> None:
    versions = [m.version for m in migrations.available()]
    assert versions == list(range(1, len(versions) + 1))
