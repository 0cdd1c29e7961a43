"""``vehicle_history``: every vehicle reading, in monthly partitions created as needed."""

from __future__ import annotations

from projections.runtime import SqlProjection

PARTITIONS = """
SELECT ensure_month_partitions('vehicle_history', min(r.recorded_at), max(r.recorded_at))
FROM vehicle_readings_between(%(after_tx)s::xid8, %(after_pos)s, %(upto_tx)s::xid8, %(upto_pos)s) r
HAVING count(*) > 0
"""

INSERT = """
INSERT INTO vehicle_history
    (vehicle_id, recorded_at, soc, kwh_delivered_dc, battery_temp, charger_id, received_at,
     position)
SELECT r.vehicle_id, r.recorded_at, r.soc, r.kwh_delivered_dc, r.battery_temp, r.charger_id,
       r.received_at, r.event_position
FROM vehicle_readings_between(%(after_tx)s::xid8, %(after_pos)s, %(upto_tx)s::xid8, %(upto_pos)s) r
ON CONFLICT DO NOTHING
"""

AHEAD = "SELECT ensure_month_partitions('vehicle_history', now(), now() + interval '2 months')"

PROJECTION = SqlProjection(
    name="vehicle_history",
    tables=("vehicle_history",),
    statements=(PARTITIONS, INSERT),
    housekeeping=(AHEAD,),
)
