"""``meter_history``: every meter reading, in monthly partitions created as needed."""

from __future__ import annotations

from projections.runtime import SqlProjection

PARTITIONS = """
SELECT ensure_month_partitions('meter_history', min(r.recorded_at), max(r.recorded_at))
FROM meter_readings_between(%(after_tx)s::xid8, %(after_pos)s, %(upto_tx)s::xid8, %(upto_pos)s) r
HAVING count(*) > 0
"""

INSERT = """
INSERT INTO meter_history (meter_id, recorded_at, kwh_consumed_ac, voltage, received_at, position)
SELECT r.meter_id, r.recorded_at, r.kwh_consumed_ac, r.voltage, r.received_at, r.event_position
FROM meter_readings_between(%(after_tx)s::xid8, %(after_pos)s, %(upto_tx)s::xid8, %(upto_pos)s) r
ON CONFLICT DO NOTHING
"""

AHEAD = "SELECT ensure_month_partitions('meter_history', now(), now() + interval '2 months')"

PROJECTION = SqlProjection(
    name="meter_history",
    tables=("meter_history",),
    statements=(PARTITIONS, INSERT),
    housekeeping=(AHEAD,),
)
