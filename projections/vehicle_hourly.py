"""``vehicle_hourly``: per vehicle and UTC hour, DC energy, battery temperature sum and count.

Numeric addition does not depend on how the log was cut into batches, so a rebuild or a
crash-and-resume gives exactly the same rows as a clean run. The efficiency answer reads
whole hours here and the partial hours at a window's edges from history.
"""

from __future__ import annotations

from projections.runtime import SqlProjection

UPSERT = """
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

PROJECTION = SqlProjection(name="vehicle_hourly", tables=("vehicle_hourly",), statements=(UPSERT,))
