"""Every projection the engine runs, by name."""

from __future__ import annotations

from projections import (
    efficiency_rollups,
    meter_history,
    meter_live,
    vehicle_history,
    vehicle_live,
    vehicle_meter_map,
)
from projections.runtime import Projection

ALL: tuple[Projection, ...] = (
    meter_live.PROJECTION,
    vehicle_live.PROJECTION,
    meter_history.PROJECTION,
    vehicle_history.PROJECTION,
    vehicle_meter_map.PROJECTION,
    efficiency_rollups.PROJECTION,
)

BY_NAME: dict[str, Projection] = {p.name: p for p in ALL}
