"""``meter_hourly``: per meter and UTC hour, AC energy and the reading count.

Numeric addition does not depend on how the log was cut into batches, so a rebuild or a
crash-and-resume gives exactly the same rows as a clean run. The efficiency answer reads
whole hours here and the partial hours at a window's edges from history.
"""

from __future__ import annotations

from projections.runtime import SqlProjection

UPSERT = """
INSERT INTO meter_hourly AS h (meter_id, hour, kwh_consumed_ac, readings)
SELECT r.meter_id, date_trunc('hour', r.recorded_at, 'UTC'), sum(r.kwh_consumed_ac::numeric),
       count(*)
FROM meter_readings_between(%(after_tx)s::xid8, %(after_pos)s, %(upto_tx)s::xid8, %(upto_pos)s) r
GROUP BY 1, 2
ON CONFLICT (meter_id, hour) DO UPDATE
SET kwh_consumed_ac = h.kwh_consumed_ac + EXCLUDED.kwh_consumed_ac,
    readings = h.readings + EXCLUDED.readings
"""

PROJECTION = SqlProjection(name="meter_hourly", tables=("meter_hourly",), statements=(UPSERT,))
