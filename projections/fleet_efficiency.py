"""``fleet_efficiency``: the last 24 hours of every vehicle, recomputed as a whole periodically.

A sliding window cannot be maintained event by event, and computing thousands of windows
per request would make fleet-wide answers slow, so the projector recomputes every vehicle's
window every ``interval`` seconds with ``vehicle_efficiency_between`` (the function the
analytics endpoint uses for one vehicle). Each row carries its window and ``computed_at``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from attrs import frozen

from domain.efficiency import Window

REFRESH = """
INSERT INTO fleet_efficiency AS f
    (vehicle_id, window_start, window_end, meter_ids, dc_kwh, ac_kwh, efficiency,
     avg_battery_temp, vehicle_readings, meter_readings, computed_at)
SELECT v.vehicle_id, %(start)s, %(end)s, e.meter_ids, e.dc_kwh, e.ac_kwh,
       CASE WHEN e.ac_kwh > 0 THEN e.dc_kwh / e.ac_kwh END,
       CASE WHEN e.vehicle_readings > 0 THEN e.battery_temp_sum / e.vehicle_readings END,
       e.vehicle_readings, coalesce(e.meter_readings, 0), %(end)s
FROM (SELECT vehicle_id FROM vehicle_live UNION SELECT vehicle_id FROM vehicle_meter_map) v,
     LATERAL vehicle_efficiency_between(v.vehicle_id, %(lo)s, %(hi)s) e
ON CONFLICT (vehicle_id) DO UPDATE
SET window_start = EXCLUDED.window_start,
    window_end = EXCLUDED.window_end,
    meter_ids = EXCLUDED.meter_ids,
    dc_kwh = EXCLUDED.dc_kwh,
    ac_kwh = EXCLUDED.ac_kwh,
    efficiency = EXCLUDED.efficiency,
    avg_battery_temp = EXCLUDED.avg_battery_temp,
    vehicle_readings = EXCLUDED.vehicle_readings,
    meter_readings = EXCLUDED.meter_readings,
    computed_at = EXCLUDED.computed_at
"""

NOW = "SELECT clock_timestamp()"


@frozen(kw_only=True)
class FleetEfficiencyRefresh:
    """Recompute every vehicle's efficiency over the 24 hours ending now."""

    name: str = "fleet_efficiency"
    interval: float = 60.0

    def run(self, conn: psycopg.Connection[Any], end: datetime | None = None) -> None:
        if end is None:
            row = conn.execute(NOW).fetchone()
            assert row is not None
            end = row[0]
        window = Window.ending(end)  # (start, end], the analytics endpoint's default
        lo, hi = window.half_open()
        conn.execute(REFRESH, {"start": window.start, "end": window.end, "lo": lo, "hi": hi})
