"""Read-your-writes at the edge: a read may name the position of its own write (query
parameter ``minPosition`` or header ``X-Min-Position``) and then waits, up to a bound,
for the projections it reads to apply it. The answer says whether they did."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import falcon

from queries.checkpoints import Consistency, wait_for
from queries.pool import ReadPool
from web.params import Params
from web.representation import plain

HEADER = "X-Min-Position"
PARAMETER = "minPosition"
MAX_POSITION = 2**63 - 1


def requested_position(req: falcon.Request, params: Params) -> int | None:
    """The position the caller wants to see, from the query string or the header."""
    position = params.integer(PARAMETER, low=1, high=MAX_POSITION)
    header = req.get_header(HEADER)
    if header is None or position is not None:
        return position
    try:
        value = int(header)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_POSITION:
        params.refuse(HEADER, f"must be a whole number between 1 and {MAX_POSITION}")
        return None
    return value


def await_position(
    pool: ReadPool, reads: Sequence[str], position: int | None, max_wait: float
) -> Consistency | None:
    """Wait for ``reads`` to reach ``position`` (nothing to do without one), holding a
    connection of ``pool`` only while looking: a waiting read keeps none from the others."""
    if position is None:
        return None
    return wait_for(pool.connection, reads, position, timeout=max_wait)


def with_consistency(body: dict[str, Any], consistency: Consistency | None) -> dict[str, Any]:
    """``body`` with the read-your-writes outcome, when the read asked for a position."""
    if consistency is not None:
        body["consistency"] = plain(consistency)
    return body
