"""A meter's readings in a time range, newest first, a page at a time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from queries.meter_live import MeterReading

READS = ("meter_history",)

# (start, end], newest first, resuming strictly before the cursor's reading time
# (a device has at most one reading per timestamp: the unique index).
PAGE = """
SELECT kwh_consumed_ac, voltage, recorded_at, received_at, position
FROM meter_history
WHERE meter_id = %(meter_id)s
  AND recorded_at > %(start)s AND recorded_at <= %(end)s AND recorded_at < %(before)s
ORDER BY recorded_at DESC
LIMIT %(limit)s
"""


def page(
    conn: psycopg.Connection[Any],
    meter_id: str,
    *,
    start: datetime,
    end: datetime,
    before: datetime,
    limit: int,
) -> list[MeterReading]:
    params = {"meter_id": meter_id, "start": start, "end": end, "before": before, "limit": limit}
    rows = conn.cursor(row_factory=tuple_row).execute(PAGE, params).fetchall()
    return [
        MeterReading(
            kwh_consumed_ac=kwh,
            voltage=voltage,
            recorded_at=recorded,
            received_at=received,
            position=position,
        )
        for kwh, voltage, recorded, received, position in rows
    ]
