"""``GET /v1/analytics/performance/{vehicleId}``: charging efficiency over a window."""

from __future__ import annotations

import falcon
from attrs import frozen

from domain.credentials import Action
from domain.efficiency import DEFAULT_WINDOW, above_one, below_threshold
from queries import efficiency
from web.consistency import PARAMETER, await_position, requested_position, with_consistency
from web.context import Dependencies
from web.offload import threaded
from web.params import Params, check_device_id, read_window
from web.problems import not_found
from web.representation import json_bytes, plain


@frozen(kw_only=True)
class Flags:
    efficiency_above_one: bool  # physically impossible: a data fault
    efficiency_below_threshold: bool  # a charger, cable or battery fault is likely
    low_threshold: float


@threaded
class PerformanceResource:
    AUTH = {"GET": Action.READ}

    ALLOWED = ("from", "to", "window", PARAMETER)

    def __init__(self, deps: Dependencies) -> None:
        self._deps = deps

    def on_get(self, req: falcon.Request, resp: falcon.Response, vehicle_id: str) -> None:
        deps = self._deps
        check_device_id("vehicleId", vehicle_id)
        params = Params(req, self.ALLOWED)
        window = read_window(
            params, now=deps.clock(), default=DEFAULT_WINDOW, max_span=deps.read.max_span
        )
        position = requested_position(req, params)
        params.done()
        consistency = await_position(deps.reads, efficiency.READS, position, deps.read.max_wait)
        with deps.reads.connection() as conn:
            answer = efficiency.vehicle_efficiency(conn, vehicle_id, window)
        if answer is None:
            raise not_found("vehicle", vehicle_id, consistency)
        threshold = deps.read.low_threshold
        performance = plain(answer)
        performance["flags"] = plain(
            Flags(
                efficiency_above_one=above_one(answer.efficiency),
                efficiency_below_threshold=below_threshold(answer.efficiency, threshold),
                low_threshold=threshold,
            )
        )
        resp.data = json_bytes(with_consistency(performance, consistency))
