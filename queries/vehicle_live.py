"""Live state of vehicles: the latest reading, the meter feeding it now, its last 24 hours."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from attrs import frozen
from psycopg.rows import tuple_row

READS = ("vehicle_live", "vehicle_meter_map")

# The meter feeding the vehicle now is the mapping period in force at ``now``.
FIND = """
SELECT k.vehicle_id, m.meter_id, m.effective_from,
       l.soc, l.kwh_delivered_dc, l.battery_temp, l.charger_id, l.recorded_at, l.received_at,
       l.position, f.efficiency, f.dc_kwh, f.ac_kwh, f.computed_at,
       EXISTS (SELECT 1 FROM vehicle_meter_map WHERE vehicle_id = k.vehicle_id)
FROM (SELECT %(vehicle_id)s::text AS vehicle_id) k
LEFT JOIN vehicle_live l ON l.vehicle_id = k.vehicle_id
LEFT JOIN LATERAL (
    SELECT meter_id, effective_from FROM vehicle_meter_map
    WHERE vehicle_id = k.vehicle_id
      AND coalesce(valid_from, '-infinity') <= %(now)s
      AND coalesce(valid_to, 'infinity') > %(now)s
    LIMIT 1
) m ON true
LEFT JOIN fleet_efficiency f ON f.vehicle_id = k.vehicle_id
"""

# Keyset pagination by vehicle id; each filter is off when its parameter is NULL.
PAGE = """
SELECT l.vehicle_id, m.meter_id, m.effective_from,
       l.soc, l.kwh_delivered_dc, l.battery_temp, l.charger_id, l.recorded_at, l.received_at,
       l.position, f.efficiency, f.dc_kwh, f.ac_kwh, f.computed_at
FROM vehicle_live l
LEFT JOIN LATERAL (
    SELECT meter_id, effective_from FROM vehicle_meter_map
    WHERE vehicle_id = l.vehicle_id
      AND coalesce(valid_from, '-infinity') <= %(now)s
      AND coalesce(valid_to, 'infinity') > %(now)s
    LIMIT 1
) m ON true
LEFT JOIN fleet_efficiency f ON f.vehicle_id = l.vehicle_id
WHERE l.vehicle_id > %(after)s
  AND (%(stale_before)s::timestamptz IS NULL OR l.recorded_at < %(stale_before)s)
  AND (%(efficiency_below)s::float8 IS NULL OR f.efficiency < %(efficiency_below)s)
ORDER BY l.vehicle_id
LIMIT %(limit)s
"""


@frozen(kw_only=True)
class VehicleReading:
    soc: float
    kwh_delivered_dc: float
    battery_temp: float
    charger_id: str | None
    recorded_at: datetime
    received_at: datetime
    position: int


@frozen(kw_only=True)
class RecentEfficiency:
    """The vehicle's last 24 hours as of the latest fleet refresh."""

    efficiency: float | None
    dc_kwh: float
    ac_kwh: float | None
    as_of: datetime


@frozen(kw_only=True)
class VehicleState:
    vehicle_id: str
    meter_id: str | None
    mapped_since: datetime | None
    last_reading: VehicleReading | None
    age_seconds: float | None
    recent_efficiency: RecentEfficiency | None


def _state(row: tuple[Any, ...], now: datetime) -> VehicleState:
    (vehicle_id, meter_id, mapped_since, soc, dc, temp, charger, recorded, received) = row[:9]
    position, efficiency, dc_24h, ac_24h, as_of = row[9:14]
    reading = None
    if recorded is not None:
        reading = VehicleReading(
            soc=soc,
            kwh_delivered_dc=dc,
            battery_temp=temp,
            charger_id=charger,
            recorded_at=recorded,
            received_at=received,
            position=position,
        )
    recent = None
    if as_of is not None:
        recent = RecentEfficiency(efficiency=efficiency, dc_kwh=dc_24h, ac_kwh=ac_24h, as_of=as_of)
    return VehicleState(
        vehicle_id=vehicle_id,
        meter_id=meter_id,
        mapped_since=mapped_since,
        last_reading=reading,
        age_seconds=(now - recorded).total_seconds() if recorded is not None else None,
        recent_efficiency=recent,
    )


def find(conn: psycopg.Connection[Any], vehicle_id: str, now: datetime) -> VehicleState | None:
    """The vehicle's state; ``None`` when it never sent a reading nor was ever mapped."""
    cursor = conn.cursor(row_factory=tuple_row)
    return _found(cursor.execute(FIND, {"vehicle_id": vehicle_id, "now": now}).fetchone(), now)


async def find_async(
    conn: psycopg.AsyncConnection[Any], vehicle_id: str, now: datetime
) -> VehicleState | None:
    """``find`` over an asynchronous connection."""
    cursor = conn.cursor(row_factory=tuple_row)
    await cursor.execute(FIND, {"vehicle_id": vehicle_id, "now": now})
    return _found(await cursor.fetchone(), now)


def _found(row: tuple[Any, ...] | None, now: datetime) -> VehicleState | None:
    assert row is not None  # one row per looked-up id
    ever_mapped = row[14]
    if row[7] is None and not ever_mapped:
        return None
    return _state(row, now)


def page(
    conn: psycopg.Connection[Any],
    *,
    now: datetime,
    after: str,
    limit: int,
    stale_before: datetime | None = None,
    efficiency_below: float | None = None,
) -> list[VehicleState]:
    """Up to ``limit`` vehicles that have reported, by id after ``after``, filtered."""
    params = {
        "now": now,
        "after": after,
        "limit": limit,
        "stale_before": stale_before,
        "efficiency_below": efficiency_below,
    }
    rows = conn.cursor(row_factory=tuple_row).execute(PAGE, params).fetchall()
    return [_state(row, now) for row in rows]
