"""``meter_hourly`` and ``vehicle_hourly``: per device and UTC hour, energy and temperature sums."""

from __future__ import annotations

from projections.runtime import SqlProjection

METER_HOURLY = """
INSERT INTO meter_hourly AS h (meter_id, hour, kwh_consumed_ac, readings)
SELECT r.meter_id, date_trunc('hour', r.recorded_at, 'UTC'), sum(r.kwh_consumed_ac::numeric),
       count(*)
FROM meter_readings_between(%(after_tx)s::xid8, %(after_pos)s, %(upto_tx)s::xid8, %(upto_pos)s) r
GROUP BY 1, 2
ON CONFLICT (meter_id, hour) DO UPDATE
SET kwh_consumed_ac = h.kwh_consumed_ac + EXCLUDED.kwh_consumed_ac,
    readings = h.readings + EXCLUDED.readings
"""

VEHICLE_HOURLY = """
INSERT INTO vehicle_hourly AS h (vehicle_id, hour, kwh_delivered_dc, battery_temp_sum, readings)
SELECT r.vehicle_id, date_trunc('hour', r.recorded_at, 'UTC'), sum(r.kwh_delivered_dc::numeric),
       sum(r.battery_temp::numeric), count(*)
FROM vehicle_readings_between(%(after_tx)s::xid8, %(after_pos)s, %(upto_tx)s::xid8, %(upto_pos)s) r
GROUP BY 1, 2
ON CONFLICT (vehicle_id, hour) DO UPDATE
SET kwh_delivered_dc = h.kwh_delivered_dc + EXCLUDED.kwh_delivered_dc,
    battery_temp_sum = h.battery_temp_sum + EXCLUDED.battery_temp_sum,
    readings = h.readings + EXCLUDED.readings
"""

PROJECTION = SqlProjection(name="efficiency_rollups", statements=(METER_HOURLY, VEHICLE_HOURLY))
