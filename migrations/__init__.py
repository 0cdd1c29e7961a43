"""Schema migrations: the numbered ``NNNN_name.sql`` files beside this module.

Each file is applied once, in order, inside one transaction together with its row in
``schema_migrations``. A transaction-scoped advisory lock makes concurrent runs (two
containers starting at once) wait for each other instead of applying a file twice.
The checksum of every applied file is recorded; an applied file that changed on disk is
an error, not something to silently skip.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

FOLDER = Path(__file__).parent
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Arbitrary constant shared by every process that migrates this schema.
_LOCK_KEY = 0x656E6572677921

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""
LOCK = "SELECT pg_advisory_xact_lock(%(key)s)"
APPLIED = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
RECORD = """
INSERT INTO schema_migrations (version, name, checksum)
VALUES (%(version)s, %(name)s, %(checksum)s)
"""
TABLE_EXISTS = "SELECT to_regclass('schema_migrations') IS NOT NULL"


class MigrationError(Exception):
    """The database's recorded migrations do not match the files on disk."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available(folder: Path = FOLDER) -> list[Migration]:
    """Every migration file in ``folder``, in version order."""
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"migration file {path.name!r} is not named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), path.stem, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version: {versions}")
    return found


def _check_history(applied: dict[int, tuple[str, str]], files: list[Migration]) -> None:
    by_version = {m.version: m for m in files}
    for version, (name, checksum) in applied.items():
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(f"applied migration {name} has no file on disk")
        if migration.checksum != checksum:
            raise MigrationError(f"migration {name} changed after it was applied")


def migrate(conninfo: str, folder: Path = FOLDER) -> list[str]:
    """Apply every pending migration; return the names applied (empty when up to date)."""
    files = available(folder)
    done: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        with conn.transaction():
            conn.execute(LOCK, {"key": _LOCK_KEY})
            conn.execute(CREATE_TABLE)
        for migration in files:
            with conn.transaction():
                conn.execute(LOCK, {"key": _LOCK_KEY})
                applied = {v: (n, c) for v, n, c in conn.execute(APPLIED)}
                _check_history(applied, files)
                if migration.version in applied:
                    continue
                conn.execute(migration.sql.encode())
                conn.execute(
                    RECORD,
                    {
                        "version": migration.version,
                        "name": migration.name,
                        "checksum": migration.checksum,
                    },
                )
                done.append(migration.name)
    return done


def pending(conn: psycopg.Connection, folder: Path = FOLDER) -> list[str]:
    """Names of the migrations not yet applied through ``conn`` (all of them on a new database)."""
    files = available(folder)
    if not conn.execute(TABLE_EXISTS).fetchone()[0]:  # type: ignore[index]
        return [m.name for m in files]
    applied = {v: (n, c) for v, n, c in conn.execute(APPLIED)}
    _check_history(applied, files)
    return [m.name for m in files if m.version not in applied]
