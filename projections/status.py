"""Where each projection stands: its checkpoint, how many events it has yet to apply, and
whether a projector process is attached to the database at all."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from attrs import frozen
from psycopg.rows import tuple_row

from eventstore import Checkpoint
from projections.runtime import Projection, ensure_checkpoints

# Events after the checkpoint in commit-safe order, whether or not they are behind the fence
# yet: what the projection still has to do. Index-only on events_commit_order.
STATUS = """
SELECT c.name, c.transaction_id::text, c.position, c.updated_at,
       (SELECT count(*) FROM events e
        WHERE (e.transaction_id, e.position) > (c.transaction_id, c.position)) AS behind
FROM projection_checkpoints c
WHERE c.name = ANY(%(names)s)
ORDER BY c.name
"""

# Projector sessions announce themselves by application name (see main.project).
PROJECTOR_SESSIONS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = %(application)s
"""

PROJECTOR_APPLICATION = "energy-projector"


@frozen(kw_only=True)
class ProjectionStatus:
    name: str
    checkpoint: Checkpoint
    behind: int
    updated_at: datetime

    @property
    def caught_up(self) -> bool:
        return self.behind == 0


def statuses(
    conn: psycopg.Connection[Any], projections: Sequence[Projection]
) -> list[ProjectionStatus]:
    """The status of each of ``projections``, by name."""
    ensure_checkpoints(conn, projections)
    cursor = conn.cursor(row_factory=tuple_row)
    rows = cursor.execute(STATUS, {"names": [p.name for p in projections]}).fetchall()
    return [
        ProjectionStatus(
            name=name,
            checkpoint=Checkpoint(transaction_id=int(tx), position=int(position)),
            behind=int(behind),
            updated_at=updated_at,
        )
        for name, tx, position, updated_at, behind in rows
    ]


def projector_sessions(conn: psycopg.Connection[Any]) -> int:
    """How many projector connections are open on this database right now."""
    row = conn.execute(PROJECTOR_SESSIONS, {"application": PROJECTOR_APPLICATION}).fetchone()
    return int(row[0]) if row else 0
