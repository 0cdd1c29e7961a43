"""Read-your-writes: whether the projections a read depends on have applied a position.

A write answers with its event's position; a reader that passes it back waits (briefly)
until every projection it reads has applied that event. Positions are not commit order,
so "applied" means the event's ``(transaction_id, position)`` is at or behind the
projection's checkpoint. On a replica an event not yet replicated is simply not there:
a position beyond the last visible one counts as not reached.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import psycopg
from attrs import frozen

UNREACHED = """
WITH target AS (
    SELECT transaction_id, position FROM events WHERE position = %(position)s
)
SELECT n.name
FROM unnest(%(names)s::text[]) AS n(name)
LEFT JOIN projection_checkpoints c ON c.name = n.name
WHERE c.name IS NULL
   OR EXISTS (
        SELECT 1 FROM target t
        WHERE (t.transaction_id, t.position) > (c.transaction_id, c.position))
   OR (NOT EXISTS (SELECT 1 FROM target)
       AND %(position)s > (SELECT coalesce(max(position), 0) FROM events))
ORDER BY n.name
"""

# Events each projection has yet to apply, counted up to a cap (an answer, not an audit).
BEHIND = """
SELECT c.name, c.position,
       (SELECT count(*) FROM (
            SELECT 1 FROM events e
            WHERE (e.transaction_id, e.position) > (c.transaction_id, c.position)
              AND e.transaction_id >= c.transaction_id
            LIMIT %(cap)s) pending)
FROM projection_checkpoints c
WHERE c.name = ANY(%(names)s)
ORDER BY c.name
"""
BEHIND_CAP = 1_000_000


@frozen(kw_only=True)
class Lag:
    """A projection that has not reached the position a reader asked for."""

    projection: str
    checkpoint_position: int
    events_behind: int  # capped at BEHIND_CAP


@frozen(kw_only=True)
class Consistency:
    """What a read asked to see (``min_position``) and what it got."""

    min_position: int
    reached: bool
    waited_ms: float
    lagging: tuple[Lag, ...] = ()


def unreached(conn: psycopg.Connection[Any], names: Sequence[str], position: int) -> list[str]:
    """Which of the projections ``names`` have not yet applied the event at ``position``."""
    rows = conn.execute(UNREACHED, {"names": list(names), "position": position}).fetchall()
    return [row[0] for row in rows]


def wait_for(
    connection: Callable[[], AbstractContextManager[psycopg.Connection[Any]]],
    names: Sequence[str],
    position: int,
    *,
    timeout: float,
    poll: float = 0.01,
) -> Consistency:
    """Wait up to ``timeout`` seconds for ``names`` to reach ``position``; what came of it.

    Each look takes a connection from ``connection()`` and gives it back before sleeping.
    """
    began = time.monotonic()
    while True:
        with connection() as conn:
            missing = unreached(conn, names, position)
            if not missing:
                waited = round((time.monotonic() - began) * 1000, 1)
                return Consistency(min_position=position, reached=True, waited_ms=waited)
            if time.monotonic() - began >= timeout:
                return _lagging(conn, missing, position, began)
        time.sleep(poll)


def _lagging(
    conn: psycopg.Connection[Any], missing: Sequence[str], position: int, began: float
) -> Consistency:
    waited = round((time.monotonic() - began) * 1000, 1)
    rows = conn.execute(BEHIND, {"names": missing, "cap": BEHIND_CAP}).fetchall()
    known = {name: (checkpoint, behind) for name, checkpoint, behind in rows}
    lagging = tuple(
        Lag(
            projection=name,
            checkpoint_position=int(known.get(name, (0, 0))[0]),
            events_behind=int(known.get(name, (0, 0))[1]),
        )
        for name in missing
    )
    return Consistency(min_position=position, reached=False, waited_ms=waited, lagging=lagging)
