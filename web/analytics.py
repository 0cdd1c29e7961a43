"""``GET /v1/analytics/performance/{vehicleId}``: charging efficiency over a window."""

from __future__ import annotations

import falcon
from attrs import frozen

from domain.credentials import Action
from domain.efficiency import DEFAULT_WINDOW, Window, above_one, below_threshold
from queries import efficiency
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


@frozen(kw_only=True)
class Performance:
    vehicle_id: str
    meter_ids: tuple[str, ...]
    window: Window
    dc_kwh: float
    ac_kwh: float | None
    efficiency: float | None
    avg_battery_temp: float | None
    vehicle_readings: int
    meter_readings: int
    flags: Flags


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
        with deps.reads.connection() as conn:
            consistency = await_position(conn, efficiency.READS, position, deps.read.max_wait)
            answer = efficiency.vehicle_efficiency(conn, vehicle_id, window)
        if answer is None:
            raise not_found("vehicle", vehicle_id, consistency)
        threshold = deps.read.low_threshold
        performance = plain(
            Performance(
                vehicle_id=answer.vehicle_id,
                meter_ids=answer.meter_ids,
                window=answer.window,
                dc_kwh=answer.dc_kwh,
                ac_kwh=answer.ac_kwh,
                efficiency=answer.efficiency,
                avg_battery_temp=answer.avg_battery_temp,
                vehicle_readings=answer.vehicle_readings,
                meter_readings=answer.meter_readings,
                flags=Flags(
                    efficiency_above_one=above_one(answer.efficiency),
                    efficiency_below_threshold=below_threshold(answer.efficiency, threshold),
                    low_threshold=threshold,
                ),
            )
        )
        resp.data = json_bytes(with_consistency(performance, consistency))
