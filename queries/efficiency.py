"""The efficiency answer of one vehicle over a window, from the read models only.

Whole hours come from the hourly rollups and the partial hours at each edge from history
(``vehicle_efficiency_between`` in ``migrations/0009_fleet_efficiency.sql``), so the cost
does not grow with history and the answer is exact. Meter energy counts for the vehicle
its meter was mapped to at each reading's time, period by period.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
from attrs import frozen
from psycopg.rows import tuple_row

from domain.efficiency import Window, efficiency_ratio

# Read models this answer comes from (for read-your-writes waits).
READS = (
    "vehicle_live",
    "vehicle_history",
    "meter_history",
    "vehicle_meter_map",
    "meter_hourly",
    "vehicle_hourly",
)

EFFICIENCY = """
SELECT EXISTS (SELECT 1 FROM vehicle_live WHERE vehicle_id = %(vehicle_id)s)
       OR EXISTS (SELECT 1 FROM vehicle_meter_map WHERE vehicle_id = %(vehicle_id)s),
       e.dc_kwh, e.battery_temp_sum, e.vehicle_readings, e.meter_ids, e.ac_kwh, e.meter_readings
FROM vehicle_efficiency_between(%(vehicle_id)s, %(lo)s, %(hi)s) e
"""


@frozen(kw_only=True)
class Efficiency:
    vehicle_id: str
    meter_ids: tuple[str, ...]
    window: Window
    dc_kwh: float
    ac_kwh: float | None
    efficiency: float | None
    avg_battery_temp: float | None
    vehicle_readings: int
    meter_readings: int


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def vehicle_efficiency(
    conn: psycopg.Connection[Any], vehicle_id: str, window: Window
) -> Efficiency | None:
    """The answer for ``vehicle_id`` over ``window``; ``None`` for a vehicle never seen."""
    cursor = conn.cursor(row_factory=tuple_row)
    row = cursor.execute(EFFICIENCY, _parameters(vehicle_id, window)).fetchone()
    return _answer(vehicle_id, window, row)


async def vehicle_efficiency_async(
    conn: psycopg.AsyncConnection[Any], vehicle_id: str, window: Window
) -> Efficiency | None:
    """``vehicle_efficiency`` over an asynchronous connection."""
    cursor = conn.cursor(row_factory=tuple_row)
    await cursor.execute(EFFICIENCY, _parameters(vehicle_id, window))
    return _answer(vehicle_id, window, await cursor.fetchone())


def _parameters(vehicle_id: str, window: Window) -> dict[str, Any]:
    lo, hi = window.half_open()
    return {"vehicle_id": vehicle_id, "lo": lo, "hi": hi}


def _answer(vehicle_id: str, window: Window, row: tuple[Any, ...] | None) -> Efficiency | None:
    assert row is not None  # the function's aggregates always yield one row
    known, dc_kwh, temp_sum, dc_readings, meter_ids, ac_kwh, ac_readings = row
    if not known:
        return None
    dc = float(dc_kwh)
    ac = _float(ac_kwh)
    return Efficiency(
        vehicle_id=vehicle_id,
        window=window,
        meter_ids=tuple(sorted(meter_ids or ())),
        dc_kwh=dc,
        ac_kwh=ac,
        efficiency=efficiency_ratio(dc, ac),
        avg_battery_temp=float(temp_sum) / dc_readings if dc_readings else None,
        vehicle_readings=int(dc_readings),
        meter_readings=int(ac_readings or 0),
    )
