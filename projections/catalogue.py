"""Every projection the engine runs, by name: the read models, and the audit ledger (which
needs the server's ledger key, so it is made where the settings are known)."""

from __future__ import annotations

from projections import (
    meter_history,
    meter_hourly,
    meter_live,
    vehicle_history,
    vehicle_hourly,
    vehicle_live,
    vehicle_meter_map,
)
from projections.ledger import LedgerProjection
from projections.runtime import Projection

ALL: tuple[Projection, ...] = (
    meter_live.PROJECTION,
    vehicle_live.PROJECTION,
    meter_history.PROJECTION,
    vehicle_history.PROJECTION,
    vehicle_meter_map.PROJECTION,
    meter_hourly.PROJECTION,
    vehicle_hourly.PROJECTION,
)

BY_NAME: dict[str, Projection] = {p.name: p for p in ALL}

LEDGER = "ledger"
NAMES: tuple[str, ...] = (*BY_NAME, LEDGER)


def with_ledger(key: bytes, every: int = 1000) -> dict[str, Projection]:
    """Every projection by name, the ledger signing its checkpoints with ``key``."""
    return {**BY_NAME, LEDGER: LedgerProjection(key, every=every)}
