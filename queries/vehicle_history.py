"""A vehicle's readings in a time range, newest first, a page at a time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from queries.vehicle_live import VehicleReading

READS = ("vehicle_history",)

# (start, end], newest first, resuming strictly before the cursor's reading time
# (a device has at most one reading per timestamp: the unique index).
PAGE = """
SELECT soc, kwh_delivered_dc, battery_temp, charger_id, recorded_at, received_at, position
FROM vehicle_history
WHERE vehicle_id = %(vehicle_id)s
  AND recorded_at > %(start)s AND recorded_at <= %(end)s AND recorded_at < %(before)s
ORDER BY recorded_at DESC
LIMIT %(limit)s
"""


def page(
    conn: psycopg.Connection[Any],
    vehicle_id: str,
    *,
    start: datetime,
    end: datetime,
    before: datetime,
    limit: int,
) -> list[VehicleReading]:
    params = {
        "vehicle_id": vehicle_id,
        "start": start,
        "end": end,
        "before": before,
        "limit": limit,
    }
    rows = conn.cursor(row_factory=tuple_row).execute(PAGE, params).fetchall()
    return [
        VehicleReading(
            soc=soc,
            kwh_delivered_dc=dc,
            battery_temp=temp,
            charger_id=charger,
            recorded_at=recorded,
            received_at=received,
            position=position,
        )
        for soc, dc, temp, charger, recorded, received, position in rows
    ]
