"""The fleet at a glance: devices live and stale, the fleet's last 24 hours, the vehicles
with the lowest efficiency. Energy figures come from ``fleet_efficiency``, recomputed
periodically by the projector, so the answer says when they were computed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from attrs import frozen
from psycopg.rows import tuple_row

READS = ("meter_live", "vehicle_live")

DEVICES = """
SELECT (SELECT count(*) FROM meter_live),
       (SELECT count(*) FROM meter_live WHERE recorded_at < %(stale_before)s),
       (SELECT count(*) FROM vehicle_live),
       (SELECT count(*) FROM vehicle_live WHERE recorded_at < %(stale_before)s)
"""

# Fleet efficiency is taken over the vehicles whose meters drew energy: a vehicle without
# a meter, or whose meter drew nothing, has no ratio to contribute.
TOTALS = """
SELECT count(*), coalesce(sum(dc_kwh), 0), sum(ac_kwh),
       sum(dc_kwh) FILTER (WHERE ac_kwh > 0), sum(ac_kwh) FILTER (WHERE ac_kwh > 0),
       min(window_start), max(window_end), min(computed_at)
FROM fleet_efficiency
"""

LOWEST = """
SELECT vehicle_id, efficiency, dc_kwh, ac_kwh, meter_ids
FROM fleet_efficiency
WHERE efficiency IS NOT NULL
ORDER BY efficiency, vehicle_id
LIMIT %(lowest)s
"""


@frozen(kw_only=True)
class DeviceCounts:
    total: int
    live: int
    stale: int


@frozen(kw_only=True)
class VehicleEfficiency:
    vehicle_id: str
    efficiency: float
    dc_kwh: float
    ac_kwh: float
    meter_ids: tuple[str, ...]


@frozen(kw_only=True)
class FleetWindow:
    start: datetime
    end: datetime
    computed_at: datetime


@frozen(kw_only=True)
class FleetSummary:
    meters: DeviceCounts
    vehicles: DeviceCounts
    window: FleetWindow | None  # None until the projector first computed the fleet
    dc_kwh: float
    ac_kwh: float | None
    efficiency: float | None
    lowest_efficiency: tuple[VehicleEfficiency, ...]


def summary(conn: psycopg.Connection[Any], *, stale_before: datetime, lowest: int) -> FleetSummary:
    cursor = conn.cursor(row_factory=tuple_row)
    devices = cursor.execute(DEVICES, {"stale_before": stale_before}).fetchone()
    totals = cursor.execute(TOTALS).fetchone()
    assert devices is not None and totals is not None  # aggregates: always one row
    meters, stale_meters, vehicles, stale_vehicles = devices
    _, dc, ac, dc_charged, ac_charged, start, end, computed = totals
    worst = cursor.execute(LOWEST, {"lowest": lowest}).fetchall()
    return FleetSummary(
        meters=DeviceCounts(total=meters, live=meters - stale_meters, stale=stale_meters),
        vehicles=DeviceCounts(total=vehicles, live=vehicles - stale_vehicles, stale=stale_vehicles),
        window=None
        if computed is None
        else FleetWindow(start=start, end=end, computed_at=computed),
        dc_kwh=float(dc),
        ac_kwh=None if ac is None else float(ac),
        efficiency=float(dc_charged) / float(ac_charged) if ac_charged else None,
        lowest_efficiency=tuple(
            VehicleEfficiency(
                vehicle_id=vehicle_id,
                efficiency=efficiency,
                dc_kwh=dc_kwh,
                ac_kwh=ac_kwh,
                meter_ids=tuple(meter_ids or ()),
            )
            for vehicle_id, efficiency, dc_kwh, ac_kwh, meter_ids in worst
        ),
    )
