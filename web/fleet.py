"""``GET /v1/fleet/summary``: devices live and stale, the fleet's last 24 hours, and the
vehicles with the lowest efficiency (as of the projector's latest fleet refresh)."""

from __future__ import annotations

from datetime import timedelta

import falcon

from domain.credentials import Action
from queries import fleet_efficiency
from web.consistency import PARAMETER, await_position, requested_position, with_consistency
from web.context import Dependencies
from web.devices import MAX_STALE_MINUTES
from web.offload import threaded
from web.params import Params
from web.representation import json_bytes, plain


@threaded
class FleetSummaryResource:
    AUTH = {"GET": Action.READ}

    ALLOWED = ("staleMinutes", "lowest", PARAMETER)

    def __init__(self, deps: Dependencies) -> None:
        self._deps = deps

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        deps = self._deps
        params = Params(req, self.ALLOWED)
        stale = params.integer("staleMinutes", low=1, high=MAX_STALE_MINUTES)
        lowest = params.integer("lowest", low=0, high=100, default=deps.read.lowest)
        position = requested_position(req, params)
        params.done()
        assert lowest is not None  # it has a default
        stale_after = deps.read.stale_after if stale is None else timedelta(minutes=stale)
        consistency = await_position(
            deps.reads, fleet_efficiency.READS, position, deps.read.max_wait
        )
        with deps.reads.connection() as conn:
            summary = fleet_efficiency.summary(
                conn, stale_before=deps.clock() - stale_after, lowest=lowest
            )
        body = plain(summary)
        body["staleAfterMinutes"] = stale_after.total_seconds() / 60
        resp.data = json_bytes(with_consistency(body, consistency))
