"""Live state of meters: the latest reading and the vehicle the meter feeds now."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from attrs import frozen
from psycopg.rows import tuple_row

READS = ("meter_live", "vehicle_meter_map")

# The vehicle the meter feeds now is the mapping period in force at ``now``.
FIND = """
SELECT k.meter_id, m.vehicle_id, m.effective_from,
       l.kwh_consumed_ac, l.voltage, l.recorded_at, l.received_at, l.position,
       EXISTS (SELECT 1 FROM vehicle_meter_map WHERE meter_id = k.meter_id)
FROM (SELECT %(meter_id)s::text AS meter_id) k
LEFT JOIN meter_live l ON l.meter_id = k.meter_id
LEFT JOIN LATERAL (
    SELECT vehicle_id, effective_from FROM vehicle_meter_map
    WHERE meter_id = k.meter_id
      AND coalesce(valid_from, '-infinity') <= %(now)s
      AND coalesce(valid_to, 'infinity') > %(now)s
    LIMIT 1
) m ON true
"""

# Keyset pagination by meter id; the filter is off when its parameter is NULL.
PAGE = """
SELECT l.meter_id, m.vehicle_id, m.effective_from,
       l.kwh_consumed_ac, l.voltage, l.recorded_at, l.received_at, l.position
FROM meter_live l
LEFT JOIN LATERAL (
    SELECT vehicle_id, effective_from FROM vehicle_meter_map
    WHERE meter_id = l.meter_id
      AND coalesce(valid_from, '-infinity') <= %(now)s
      AND coalesce(valid_to, 'infinity') > %(now)s
    LIMIT 1
) m ON true
WHERE l.meter_id > %(after)s
  AND (%(stale_before)s::timestamptz IS NULL OR l.recorded_at < %(stale_before)s)
ORDER BY l.meter_id
LIMIT %(limit)s
"""


@frozen(kw_only=True)
class MeterReading:
    kwh_consumed_ac: float
    voltage: float
    recorded_at: datetime
    received_at: datetime
    position: int


@frozen(kw_only=True)
class MeterState:
    meter_id: str
    vehicle_id: str | None
    mapped_since: datetime | None
    last_reading: MeterReading | None
    age_seconds: float | None


def _state(row: tuple[Any, ...], now: datetime) -> MeterState:
    meter_id, vehicle_id, mapped_since, kwh, voltage, recorded, received, position = row[:8]
    reading = None
    if recorded is not None:
        reading = MeterReading(
            kwh_consumed_ac=kwh,
            voltage=voltage,
            recorded_at=recorded,
            received_at=received,
            position=position,
        )
    return MeterState(
        meter_id=meter_id,
        vehicle_id=vehicle_id,
        mapped_since=mapped_since,
        last_reading=reading,
        age_seconds=(now - recorded).total_seconds() if recorded is not None else None,
    )


def find(conn: psycopg.Connection[Any], meter_id: str, now: datetime) -> MeterState | None:
    """The meter's state; ``None`` when it never sent a reading nor was ever mapped."""
    cursor = conn.cursor(row_factory=tuple_row)
    return _found(cursor.execute(FIND, {"meter_id": meter_id, "now": now}).fetchone(), now)


async def find_async(
    conn: psycopg.AsyncConnection[Any], meter_id: str, now: datetime
) -> MeterState | None:
    """``find`` over an asynchronous connection."""
    cursor = conn.cursor(row_factory=tuple_row)
    await cursor.execute(FIND, {"meter_id": meter_id, "now": now})
    return _found(await cursor.fetchone(), now)


def _found(row: tuple[Any, ...] | None, now: datetime) -> MeterState | None:
    assert row is not None  # one row per looked-up id
    if row[5] is None and not row[8]:
        return None
    return _state(row, now)


def page(
    conn: psycopg.Connection[Any],
    *,
    now: datetime,
    after: str,
    limit: int,
    stale_before: datetime | None = None,
) -> list[MeterState]:
    """Up to ``limit`` meters that have reported, by id after ``after``, filtered."""
    params = {"now": now, "after": after, "limit": limit, "stale_before": stale_before}
    rows = conn.cursor(row_factory=tuple_row).execute(PAGE, params).fetchall()
    return [_state(row, now) for row in rows]
