"""Where each projection stands, for the engineers watching them: its checkpoint, how many
events and seconds it is behind, and whether it is caught up, running or stalled (and why:
no projector attached, no progress, or the commit-safe fence held by an open transaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from attrs import frozen
from psycopg.rows import tuple_row

from eventstore import Checkpoint

# Per projection: how many events after its checkpoint (commit-safe order, fenced or not),
# and the first of them: when it was received and whether the fence still holds it back.
STATUS = """
WITH c AS (
    SELECT n.name, coalesce(p.transaction_id, '0'::xid8) AS transaction_id,
           coalesce(p.position, 0) AS position, p.updated_at
    FROM unnest(%(names)s::text[]) AS n(name)
    LEFT JOIN projection_checkpoints p ON p.name = n.name  -- no row: it never ran
)
SELECT c.name, c.transaction_id::text, c.position, c.updated_at,
       (SELECT count(*) FROM events e
        WHERE (e.transaction_id, e.position) > (c.transaction_id, c.position)
          AND e.transaction_id >= c.transaction_id) AS behind,
       extract(epoch FROM now() - first.received_at),
       first.transaction_id >= pg_snapshot_xmin(pg_current_snapshot()),
       coalesce(extract(epoch FROM now() - c.updated_at), 'infinity')
FROM c
LEFT JOIN LATERAL (
    SELECT e.received_at, e.transaction_id FROM events e
    WHERE (e.transaction_id, e.position) > (c.transaction_id, c.position)
      AND e.transaction_id >= c.transaction_id
    ORDER BY e.transaction_id, e.position
    LIMIT 1
) first ON true
ORDER BY c.name
"""

# The oldest transaction holding an id, anywhere on the server: the one holding the fence.
FENCE_HOLDER = """
SELECT pid, datname, application_name, state, extract(epoch FROM now() - xact_start),
       left(regexp_replace(query, '\\s+', ' ', 'g'), 120)
FROM pg_stat_activity
WHERE backend_xid IS NOT NULL
ORDER BY age(backend_xid) DESC
LIMIT 1
"""

# Projector sessions announce themselves by application name (see main.project).
PROJECTOR_SESSIONS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = %(application)s
"""

PROJECTOR_APPLICATION = "energy-projector"
# A projection whose oldest pending event has waited this long, with no checkpoint move
# for as long, is stalled (a checkpoint idle because nothing came is not).
STALL_AFTER_SECONDS = 30.0


@frozen(kw_only=True)
class ProjectionStatus:
    name: str
    checkpoint: Checkpoint
    behind: int
    seconds_behind: float  # since the first event it has yet to apply was received
    updated_at: datetime | None  # None: it never ran
    state: str  # caught up, running, stalled
    reason: str | None = None

    @property
    def caught_up(self) -> bool:
        return self.behind == 0


def _fence_holder(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute(FENCE_HOLDER).fetchone()
    if row is None:
        return "the commit-safe fence (the holding transaction has just ended)"
    pid, database, application, state, seconds, query = row
    return (
        f"the commit-safe fence, held by the oldest open transaction: pid {pid}"
        f" ({application or 'no application name'}, database {database}), open"
        f" {float(seconds or 0):.0f} s, {state}: {query}"
    )


def statuses(
    conn: psycopg.Connection[Any], names: Sequence[str], *, sessions: int | None = None
) -> list[ProjectionStatus]:
    """The status of each projection named, by name. ``sessions`` is the number of
    projector sessions attached, when the caller has counted them already."""
    attached = (projector_sessions(conn) if sessions is None else sessions) > 0
    cursor = conn.cursor(row_factory=tuple_row)
    rows = cursor.execute(STATUS, {"names": list(names)}).fetchall()
    found = []
    for name, tx, position, updated_at, behind, lag, fenced, idle in rows:
        state, reason = "caught up", None
        if behind:
            state = "running"
            if fenced:
                reason = f"waiting behind {_fence_holder(conn)}"
            if not attached:
                state, reason = "stalled", "no projector is attached to this database"
            elif float(lag) > STALL_AFTER_SECONDS and float(idle) > STALL_AFTER_SECONDS:
                state = "stalled"
                reason = reason or f"no progress for {float(idle):.0f} s (see the projector's log)"
        found.append(
            ProjectionStatus(
                name=name,
                checkpoint=Checkpoint(transaction_id=int(tx), position=int(position)),
                behind=int(behind),
                seconds_behind=round(float(lag), 3) if lag is not None else 0.0,
                updated_at=updated_at,
                state=state,
                reason=reason,
            )
        )
    return found


def projector_sessions(conn: psycopg.Connection[Any]) -> int:
    """How many projector connections are open on this database right now."""
    row = conn.execute(PROJECTOR_SESSIONS, {"application": PROJECTOR_APPLICATION}).fetchone()
    return int(row[0]) if row else 0
