"""A simulated fleet: device ids and plausible reading values, shared by loadgen and seed.

Vehicle ``i`` charges from meter ``i``. Each pair follows an 8-hour cycle: a 3-hour charging
session at the pair's own power (3.7 to 11 kW), then driving. While charging the meter draws
``power * interval`` kWh (the vehicle takes in 86 to 94 % of it) and the state of charge rises
from 20 to 95 %; otherwise the meter draws a standby trickle and the battery drains.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

CYCLE_S = 8 * 3600
CHARGING_S = 3 * 3600


def meter_id(prefix: str, index: int) -> str:
    """The id of meter ``index``, e.g. ``M00007`` (``prefix`` keeps runs apart)."""
    return f"{prefix}M{index:05d}"


def vehicle_id(prefix: str, index: int) -> str:
    """The id of vehicle ``index``, e.g. ``V00007``."""
    return f"{prefix}V{index:05d}"


@dataclass(frozen=True)
class Pair:
    """The fixed traits of meter/vehicle ``index``."""

    power_kw: float
    efficiency: float
    phase_s: int


class Fleet:
    """``meters`` meters and ``vehicles`` vehicles; the first ``min(...)`` of each are paired."""

    def __init__(
        self, *, meters: int, vehicles: int, prefix: str = "", seed: int = 1, interval_s: int = 60
    ) -> None:
        self.meters = meters
        self.vehicles = vehicles
        self.prefix = prefix
        self.interval_s = interval_s
        self.rng = random.Random(seed)
        self._pairs = [
            Pair(
                power_kw=self.rng.uniform(3.7, 11.0),
                efficiency=self.rng.uniform(0.86, 0.94),
                phase_s=self.rng.randrange(CYCLE_S),
            )
            for _ in range(max(meters, vehicles))
        ]
        self.meter_ids = [meter_id(prefix, i) for i in range(meters)]
        self.vehicle_ids = [vehicle_id(prefix, i) for i in range(vehicles)]

    @property
    def devices(self) -> int:
        return self.meters + self.vehicles

    def pairs(self) -> list[tuple[str, str]]:
        """``(vehicle id, meter id)`` of every mapped pair."""
        return list(zip(self.vehicle_ids, self.meter_ids, strict=False))

    def _charging(self, index: int, at: int) -> tuple[Pair, float | None]:
        """The pair's traits and, while charging, how far into the session (0..1) it is."""
        pair = self._pairs[index]
        into = (at + pair.phase_s) % CYCLE_S
        return pair, (into / CHARGING_S if into < CHARGING_S else None)

    def meter_values(self, index: int, at: int) -> tuple[float, float]:
        """``(kwhConsumedAc, voltage)`` of meter ``index`` for the interval ending at ``at``."""
        pair, session = self._charging(index, at)
        rng = self.rng
        if session is None:
            kwh = 0.002 * rng.random()
        else:
            kwh = pair.power_kw * self.interval_s / 3600 * rng.uniform(0.97, 1.0)
        return round(kwh, 5), round(230.0 + rng.uniform(-4.0, 4.0), 1)

    def vehicle_values(self, index: int, at: int) -> tuple[float, float, float]:
        """``(soc, kwhDeliveredDc, batteryTemp)`` of vehicle ``index`` at ``at``."""
        pair, session = self._charging(index, at)
        rng = self.rng
        if session is None:
            into = (at + pair.phase_s) % CYCLE_S - CHARGING_S
            soc = 95.0 - 75.0 * into / (CYCLE_S - CHARGING_S)
            kwh, temp = 0.0, 22.0
        else:
            soc = 20.0 + 75.0 * session
            kwh = pair.power_kw * pair.efficiency * self.interval_s / 3600 * rng.uniform(0.97, 1)
            temp = 30.0
        return round(soc, 1), round(kwh, 5), round(temp + rng.uniform(-1.5, 1.5), 1)

    def meter_reading(self, index: int, at: int) -> dict[str, object]:
        """The API body of meter ``index``'s reading at epoch second ``at``."""
        kwh, voltage = self.meter_values(index, at)
        return {
            "meterId": self.meter_ids[index],
            "kwhConsumedAc": kwh,
            "voltage": voltage,
            "timestamp": at,
        }

    def vehicle_reading(self, index: int, at: int) -> dict[str, object]:
        """The API body of vehicle ``index``'s reading at epoch second ``at``."""
        soc, kwh, temp = self.vehicle_values(index, at)
        return {
            "vehicleId": self.vehicle_ids[index],
            "soc": soc,
            "kwhDeliveredDc": kwh,
            "batteryTemp": temp,
            "timestamp": at,
        }
