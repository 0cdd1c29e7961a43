"""``vehicle_meter_map``: effective-dated mapping periods, past and current.

Mappings are rare and their replacement rules are domain logic (``domain.mappings``), so
this projection applies them one by one, in log order, in Python: it loads the periods of
the two devices involved, applies the rule, and writes those periods back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from domain.mappings import MappingPeriod, VehicleMeterMapped, apply_mapping
from projections.runtime import Batch

MAPPINGS = """
SELECT e.payload->>'vehicleId', e.payload->>'meterId',
       (e.payload->>'effectiveFrom')::timestamptz, e.position
FROM events e
WHERE (e.transaction_id, e.position) > (%(after_tx)s::xid8, %(after_pos)s)
  AND (e.transaction_id, e.position) <= (%(upto_tx)s::xid8, %(upto_pos)s)
  AND e.transaction_id BETWEEN %(after_tx)s::xid8 AND %(upto_tx)s::xid8  -- see 0002
  AND e.event_type = 'VehicleMeterMapped'
ORDER BY e.transaction_id, e.position
"""

INVOLVED = """
SELECT vehicle_id, meter_id, valid_from, valid_to, effective_from, position
FROM vehicle_meter_map
WHERE vehicle_id = %(vehicle_id)s OR meter_id = %(meter_id)s
"""

FORGET = (
    "DELETE FROM vehicle_meter_map WHERE vehicle_id = %(vehicle_id)s OR meter_id = %(meter_id)s"
)

WRITE = """
INSERT INTO vehicle_meter_map
    (vehicle_id, meter_id, valid_from, valid_to, effective_from, position)
VALUES
    (%(vehicle_id)s, %(meter_id)s, %(valid_from)s, %(valid_to)s, %(effective_from)s, %(position)s)
"""

Origin = tuple[datetime, int]  # the effective_from and position of the event behind a period


class VehicleMeterMapProjection:
    name = "vehicle_meter_map"
    tables = ("vehicle_meter_map",)

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        """Nothing to do ahead of time."""

    def apply(self, conn: psycopg.Connection[Any], batch: Batch) -> None:
        cursor = conn.cursor(row_factory=tuple_row)
        for vehicle_id, meter_id, effective_from, position in cursor.execute(
            MAPPINGS, batch.params
        ).fetchall():
            event = VehicleMeterMapped(
                vehicle_id=vehicle_id, meter_id=meter_id, effective_from=effective_from
            )
            self._apply_one(cursor, event, (effective_from, position))

    def _apply_one(
        self, cursor: psycopg.Cursor[Any], event: VehicleMeterMapped, origin: Origin
    ) -> None:
        keys = {"vehicle_id": event.vehicle_id, "meter_id": event.meter_id}
        origins: dict[tuple[str, str, datetime | None], Origin] = {}
        periods = []
        for vehicle_id, meter_id, valid_from, valid_to, effective_from, position in cursor.execute(
            INVOLVED, keys
        ).fetchall():
            periods.append(
                MappingPeriod(
                    vehicle_id=vehicle_id,
                    meter_id=meter_id,
                    valid_from=valid_from,
                    valid_to=valid_to,
                )
            )
            origins[(vehicle_id, meter_id, valid_from)] = (effective_from, position)
        cursor.execute(FORGET, keys)
        rows = []
        for period in apply_mapping(periods, event):
            effective_from, position = origins.get(
                (period.vehicle_id, period.meter_id, period.valid_from), origin
            )
            rows.append(
                {
                    "vehicle_id": period.vehicle_id,
                    "meter_id": period.meter_id,
                    "valid_from": period.valid_from,
                    "valid_to": period.valid_to,
                    "effective_from": effective_from,
                    "position": position,
                }
            )
        cursor.executemany(WRITE, rows)


PROJECTION = VehicleMeterMapProjection()
