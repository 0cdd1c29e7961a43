"""``GET /v1/analytics/performance/{vehicleId}``: charging efficiency over a window."""

from __future__ import annotations

import asyncio

import falcon
from attrs import frozen

from domain.credentials import Action
from domain.efficiency import DEFAULT_WINDOW, Window, above_one, below_threshold
from queries import efficiency
from queries.checkpoints import Consistency
from web.consistency import PARAMETER, await_position, requested_position, with_consistency
from web.context import Dependencies
from web.params import Params, check_device_id, read_window
from web.problems import not_found
from web.representation import json_bytes, plain


@frozen(kw_only=True)
class Flags:
    efficiency_above_one: bool  # physically impossible: a data fault
    efficiency_below_threshold: bool  # a charger, cable or battery fault is likely
    low_threshold: float


class PerformanceResource:
    """Answered on the event loop when the app has asynchronous read connections (the
    dashboards' hottest read: no hand-off to a pool thread and back), in a pool thread
    otherwise and whenever the read waits for a position."""

    AUTH = {"GET": Action.READ}

    ALLOWED = ("from", "to", "window", PARAMETER)

    def __init__(self, deps: Dependencies) -> None:
        self._deps = deps

    async def on_get(self, req: falcon.Request, resp: falcon.Response, vehicle_id: str) -> None:
        deps = self._deps
        check_device_id("vehicleId", vehicle_id)
        params = Params(req, self.ALLOWED)
        window = read_window(
            params, now=deps.clock(), default=DEFAULT_WINDOW, max_span=deps.read.max_span
        )
        position = requested_position(req, params)
        params.done()
        if deps.async_reads is None or position is not None:
            consistency, answer = await asyncio.to_thread(self._read, vehicle_id, window, position)
        else:
            consistency = None
            async with deps.async_reads.connection() as conn:
                answer = await efficiency.vehicle_efficiency_async(conn, vehicle_id, window)
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

    def _read(
        self, vehicle_id: str, window: Window, position: int | None
    ) -> tuple[Consistency | None, efficiency.Efficiency | None]:
        deps = self._deps
        consistency = await_position(deps.reads, efficiency.READS, position, deps.read.max_wait)
        with deps.reads.connection() as conn:
            return consistency, efficiency.vehicle_efficiency(conn, vehicle_id, window)
