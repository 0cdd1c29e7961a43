"""``meter_live``: the latest reading of every meter; a late one never replaces a newer."""

from __future__ import annotations

from projections.runtime import SqlProjection

UPSERT = """
INSERT INTO meter_live AS live
    (meter_id, kwh_consumed_ac, voltage, recorded_at, received_at, position, projected_at)
SELECT DISTINCT ON (r.meter_id)
       r.meter_id, r.kwh_consumed_ac, r.voltage, r.recorded_at, r.received_at,
       r.event_position, now()
FROM meter_readings_between(%(after_tx)s::xid8, %(after_pos)s, %(upto_tx)s::xid8, %(upto_pos)s) r
ORDER BY r.meter_id, r.recorded_at DESC
ON CONFLICT (meter_id) DO UPDATE
SET kwh_consumed_ac = EXCLUDED.kwh_consumed_ac,
    voltage = EXCLUDED.voltage,
    recorded_at = EXCLUDED.recorded_at,
    received_at = EXCLUDED.received_at,
    position = EXCLUDED.position,
    projected_at = EXCLUDED.projected_at
WHERE live.recorded_at < EXCLUDED.recorded_at
"""

PROJECTION = SqlProjection(name="meter_live", tables=("meter_live",), statements=(UPSERT,))
