"""``vehicle_live``: the latest reading of every vehicle; a late one never replaces a newer."""

from __future__ import annotations

from projections.runtime import SqlProjection

UPSERT = """
INSERT INTO vehicle_live AS live
    (vehicle_id, soc, kwh_delivered_dc, battery_temp, charger_id, recorded_at, received_at,
     position, projected_at)
SELECT DISTINCT ON (r.vehicle_id)
       r.vehicle_id, r.soc, r.kwh_delivered_dc, r.battery_temp, r.charger_id, r.recorded_at,
       r.received_at, r.event_position, now()
FROM vehicle_readings_between(%(after_tx)s::xid8, %(after_pos)s, %(upto_tx)s::xid8, %(upto_pos)s) r
ORDER BY r.vehicle_id, r.recorded_at DESC
ON CONFLICT (vehicle_id) DO UPDATE
SET soc = EXCLUDED.soc,
    kwh_delivered_dc = EXCLUDED.kwh_delivered_dc,
    battery_temp = EXCLUDED.battery_temp,
    charger_id = EXCLUDED.charger_id,
    recorded_at = EXCLUDED.recorded_at,
    received_at = EXCLUDED.received_at,
    position = EXCLUDED.position,
    projected_at = EXCLUDED.projected_at
WHERE live.recorded_at < EXCLUDED.recorded_at
"""

PROJECTION = SqlProjection(name="vehicle_live", tables=("vehicle_live",), statements=(UPSERT,))
