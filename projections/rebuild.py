"""Rebuilding a projection from position zero without downtime.

The rebuild builds the projection's tables anew in a schema of its own,
``rebuild_<name>``, while the current tables keep serving readers and the running
projector keeps them up to date. It runs the projection's own SQL, unchanged, with
``search_path = rebuild_<name>, public``: its tables resolve to the new copies, the event
log and the SQL functions to ``public``. Its checkpoint is the row ``<name>@rebuild``,
written with each batch, so an interrupted rebuild (Ctrl-C, SIGKILL) resumes where it
stopped.

Caught up, it switches in one transaction: it locks the projection's checkpoint row
(the running projector skips the projection meanwhile), applies the last events, moves
the current tables out and the new ones into ``public`` under the same names (indexes,
storage options and privileges too), hands its checkpoint to the projection and drops
the old tables. Readers wait a moment for the switch and then read the new tables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from projections.runtime import (
    Batch,
    Projection,
    apply_next,
    ensure_checkpoints,
    projector_session,
    run_batch,
)

SUFFIX = "@rebuild"

# Only one rebuild of a projection at a time (a session lock: it ends with the process).
TRY_LOCK = "SELECT pg_try_advisory_lock(hashtext('energy-rebuild:' || %(name)s))"
UNLOCK = "SELECT pg_advisory_unlock(hashtext('energy-rebuild:' || %(name)s))"
SCHEMA_EXISTS = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(schema)s)"
CHECKPOINT_EXISTS = "SELECT EXISTS (SELECT 1 FROM projection_checkpoints WHERE name = %(name)s)"
FORGET_CHECKPOINT = "DELETE FROM projection_checkpoints WHERE name = %(name)s"
LOCK_LIVE = "SELECT 1 FROM projection_checkpoints WHERE name = %(name)s FOR UPDATE"
HAND_OVER = """
UPDATE projection_checkpoints live
SET transaction_id = built.transaction_id, position = built.position, updated_at = now()
FROM projection_checkpoints built
WHERE live.name = %(name)s AND built.name = %(built)s
"""
REMAINING = """
SELECT count(*) FROM events e, projection_checkpoints c
WHERE c.name = %(name)s AND (e.transaction_id, e.position) > (c.transaction_id, c.position)
      AND e.transaction_id >= c.transaction_id  -- lets the index see the bound
"""
STORAGE_OPTIONS = """
SELECT coalesce(c.reloptions, '{}') FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s
"""
PARTITIONS = """
SELECT child.relname FROM pg_inherits i
JOIN pg_class parent ON parent.oid = i.inhparent
JOIN pg_namespace n ON n.oid = parent.relnamespace
JOIN pg_class child ON child.oid = i.inhrelid
WHERE n.nspname = %(schema)s AND parent.relname = %(table)s
ORDER BY child.relname
"""
# Each index of a table by its definition without its name, so that an index of the new
# table can take the name its counterpart had (LIKE ... INCLUDING INDEXES makes up names).
INDEXES = """
SELECT indexname,
       regexp_replace(indexdef, '^CREATE (UNIQUE )?INDEX \\S+ ON (ONLY )?\\S+ ', '\\1')
FROM pg_indexes WHERE schemaname = %(schema)s AND tablename = %(table)s
"""
PRIVILEGES = """
SELECT a.privilege_type, coalesce(r.rolname, 'PUBLIC')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL aclexplode(c.relacl) a
LEFT JOIN pg_roles r ON r.oid = a.grantee
WHERE n.nspname = 'public' AND c.relname = %(table)s AND a.grantee <> c.relowner
"""


class RebuildBusy(Exception):
    """Another process is rebuilding this projection right now."""


def schema_of(projection: Projection) -> str:
    return f"rebuild_{projection.name}"


class Rebuilding:
    """``projection`` writing into its rebuild schema, under its rebuild checkpoint."""

    def __init__(self, projection: Projection) -> None:
        self.name = projection.name + SUFFIX
        self.tables = projection.tables
        self._inner = projection

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        self._inner.prepare(conn)

    def apply(self, conn: psycopg.Connection[Any], batch: Batch) -> None:
        self._inner.apply(conn, batch)


def _clone(conn: psycopg.Connection[Any], table: str, schema: str) -> None:
    """An empty copy of ``public.<table>`` in ``schema``: columns, defaults, constraints,
    indexes, partitioning and storage options (partitions come as readings need them)."""
    target, source = sql.Identifier(schema, table), sql.Identifier("public", table)
    row = conn.execute(
        "SELECT pg_get_partkeydef(%(table)s::regclass)", {"table": f"public.{table}"}
    ).fetchone()
    partitioning = row[0] if row else None
    statement = sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(target, source)
    if partitioning:
        statement = sql.SQL("{} PARTITION BY {}").format(statement, sql.SQL(partitioning))
    conn.execute(statement)
    found = conn.execute(STORAGE_OPTIONS, {"schema": "public", "table": table}).fetchone()
    options = found[0] if found else None
    if options:
        conn.execute(
            sql.SQL("ALTER TABLE {} SET ({})").format(
                target, sql.SQL(", ").join(sql.SQL(option) for option in options)
            )
        )


def start(conn: psycopg.Connection[Any], projection: Projection, *, restart: bool) -> bool:
    """Prepare the rebuild schema and checkpoint; ``True`` when resuming an earlier one."""
    schema, target = schema_of(projection), Rebuilding(projection)
    exists = conn.execute(SCHEMA_EXISTS, {"schema": schema}).fetchone()
    checkpoint = conn.execute(CHECKPOINT_EXISTS, {"name": target.name}).fetchone()
    if exists and exists[0] and checkpoint and checkpoint[0] and not restart:
        return True
    with conn.transaction():
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(FORGET_CHECKPOINT, {"name": target.name})
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for table in projection.tables:
            _clone(conn, table, schema)
    ensure_checkpoints(conn, [target])
    return False


def remaining(conn: psycopg.Connection[Any], projection: Projection) -> int:
    """Events the rebuild has yet to apply."""
    row = conn.execute(REMAINING, {"name": projection.name + SUFFIX}).fetchone()
    return int(row[0]) if row else 0


def _move(conn: psycopg.Connection[Any], table: str, source: str, target: str) -> None:
    """Move ``source.<table>`` and its partitions to schema ``target``."""
    for (child,) in conn.execute(PARTITIONS, {"schema": source, "table": table}).fetchall():
        conn.execute(
            sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                sql.Identifier(source, child), sql.Identifier(target)
            )
        )
    conn.execute(
        sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
            sql.Identifier(source, table), sql.Identifier(target)
        )
    )


def switch(conn: psycopg.Connection[Any], projection: Projection, batch_size: int) -> int:
    """Put the rebuilt tables in place of the current ones, in one transaction; the
    number of events applied in it (the last ones, while the projection was locked)."""
    schema, target = schema_of(projection), Rebuilding(projection)
    retired = f"retired_{projection.name}"
    applied = 0
    with conn.transaction():
        conn.execute(LOCK_LIVE, {"name": projection.name})
        while step := apply_next(conn, target, batch_size):
            applied += step
        # Readers lock a partitioned table before its partitions; moving a table locks
        # each partition first. Taking every table whole first keeps the readers' order
        # (no deadlock): they wait for the switch, then read the new tables.
        for table in projection.tables:
            conn.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                    sql.Identifier("public", table)
                )
            )
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(retired)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(retired)))
        for table in projection.tables:
            grants = conn.execute(PRIVILEGES, {"table": table}).fetchall()
            names = {
                definition: name
                for name, definition in conn.execute(
                    INDEXES, {"schema": "public", "table": table}
                ).fetchall()
            }
            _move(conn, table, "public", retired)
            _move(conn, table, schema, "public")
            for name, definition in conn.execute(
                INDEXES, {"schema": "public", "table": table}
            ).fetchall():
                original = names.get(definition)
                if original is not None and original != name:
                    conn.execute(
                        sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                            sql.Identifier("public", name), sql.Identifier(original)
                        )
                    )
            for privilege, grantee in grants:
                conn.execute(
                    sql.SQL("GRANT {} ON {} TO {}").format(
                        sql.SQL(privilege),
                        sql.Identifier("public", table),
                        sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee),
                    )
                )
        conn.execute(HAND_OVER, {"name": projection.name, "built": target.name})
        conn.execute(FORGET_CHECKPOINT, {"name": target.name})
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(retired)))
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    return applied


def rebuild(
    connect: Callable[[], psycopg.Connection[Any]],
    projection: Projection,
    *,
    batch_size: int = 5000,
    restart: bool = False,
    progress: Callable[[int, int], None] | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Rebuild ``projection`` from position zero and switch to it; what was done.

    ``progress(done, total)`` is called after every batch. ``stop_after`` stops after
    that many events without switching (the tests' way of interrupting).
    """
    with projector_session(connect()) as conn:
        locked = conn.execute(TRY_LOCK, {"name": projection.name}).fetchone()
        if not (locked and locked[0]):
            raise RebuildBusy(f"another process is rebuilding {projection.name}")
        try:
            resumed = start(conn, projection, restart=restart)
            schema = schema_of(projection)
            conn.execute(sql.SQL("SET search_path = {}, public").format(sql.Identifier(schema)))
            target = Rebuilding(projection)
            target.prepare(conn)
            total, done = remaining(conn, projection), 0
            while step := run_batch(conn, target, batch_size):
                done += step
                if progress is not None:
                    progress(done, total)
                if stop_after is not None and done >= stop_after:
                    return {"resumed": resumed, "applied": done, "switched": False}
            final = switch(conn, projection, batch_size)
            return {"resumed": resumed, "applied": done + final, "switched": True}
        finally:
            conn.execute(UNLOCK, {"name": projection.name})
