"""Read models recomputed in plain Python from the events, the slow obvious way."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from decimal import Context, Decimal
from typing import TypeVar

from attrs import frozen

from domain.efficiency import Window, efficiency_ratio
from domain.mappings import MappingPeriod, VehicleMeterMapped, apply_mapping
from domain.readings import MeterReadingRecorded, VehicleReadingRecorded

Event = MeterReadingRecorded | VehicleReadingRecorded | VehicleMeterMapped


# PostgreSQL's numeric addition is exact; Decimal's default context rounds to 28 digits.
# A double spans about 10^-324..10^308, so 700 digits hold any sum of them exactly.
EXACT = Context(prec=700, Emin=-999_999, Emax=999_999)


def as_numeric(value: float) -> Decimal:
    """A double as PostgreSQL's float8-to-numeric cast makes it: 15 significant digits."""
    return Decimal(format(value, ".15g"))


def add(a: Decimal, b: Decimal) -> Decimal:
    return EXACT.add(a, b)


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


R = TypeVar("R", MeterReadingRecorded, VehicleReadingRecorded)


def latest_by(readings: list[R], device: Callable[[R], str]) -> dict[str, R]:
    """The newest reading of each device, whatever order they arrived in."""
    latest: dict[str, R] = {}
    for r in readings:
        if device(r) not in latest or latest[device(r)].timestamp < r.timestamp:
            latest[device(r)] = r
    return latest


@frozen(kw_only=True)
class Expected:
    """What every read model should hold after the events, in log order."""

    meters: list[MeterReadingRecorded]
    vehicles: list[VehicleReadingRecorded]
    periods: list[MappingPeriod]

    @classmethod
    def of(cls, events: list[Event]) -> Expected:
        periods: list[MappingPeriod] = []
        for event in events:
            if isinstance(event, VehicleMeterMapped):
                periods = apply_mapping(periods, event)
        return cls(
            meters=[e for e in events if isinstance(e, MeterReadingRecorded)],
            vehicles=[e for e in events if isinstance(e, VehicleReadingRecorded)],
            periods=periods,
        )

    def meter_live(self) -> dict[str, MeterReadingRecorded]:
        return latest_by(self.meters, lambda r: r.meter_id)

    def vehicle_live(self) -> dict[str, VehicleReadingRecorded]:
        return latest_by(self.vehicles, lambda r: r.vehicle_id)

    def meter_hourly(self) -> dict[tuple[str, datetime], tuple[Decimal, int]]:
        sums: dict[tuple[str, datetime], tuple[Decimal, int]] = defaultdict(lambda: (Decimal(0), 0))
        for r in self.meters:
            kwh, n = sums[(r.meter_id, hour_of(r.timestamp))]
            sums[(r.meter_id, hour_of(r.timestamp))] = (
                add(kwh, as_numeric(r.kwh_consumed_ac)),
                n + 1,
            )
        return dict(sums)

    def vehicle_hourly(self) -> dict[tuple[str, datetime], tuple[Decimal, Decimal, int]]:
        sums: dict[tuple[str, datetime], tuple[Decimal, Decimal, int]] = defaultdict(
            lambda: (Decimal(0), Decimal(0), 0)
        )
        for r in self.vehicles:
            kwh, temp, n = sums[(r.vehicle_id, hour_of(r.timestamp))]
            sums[(r.vehicle_id, hour_of(r.timestamp))] = (
                add(kwh, as_numeric(r.kwh_delivered_dc)),
                add(temp, as_numeric(r.battery_temp)),
                n + 1,
            )
        return dict(sums)


@frozen(kw_only=True)
class BruteEfficiency:
    meter_ids: tuple[str, ...]
    dc_kwh: float
    ac_kwh: float | None
    efficiency: float | None
    avg_battery_temp: float | None
    vehicle_readings: int
    meter_readings: int


def brute_efficiency(
    vehicle_id: str,
    window: Window,
    vehicles: list[VehicleReadingRecorded],
    meters: list[MeterReadingRecorded],
    periods: list[MappingPeriod],
) -> BruteEfficiency:
    """Sum every reading one by one: no rollups, no index, no cleverness."""
    mine = [v for v in vehicles if v.vehicle_id == vehicle_id and window.contains(v.timestamp)]
    dc = sum(v.kwh_delivered_dc for v in mine)
    own = [p for p in periods if p.vehicle_id == vehicle_id]
    overlapping = [
        p
        for p in own
        if (p.valid_from is None or p.valid_from <= window.end)
        and (p.valid_to is None or p.valid_to > window.start)
        and _period_meets_window(p, window)
    ]
    counted = [
        m
        for m in meters
        if window.contains(m.timestamp)
        and any(p.meter_id == m.meter_id and p.covers(m.timestamp) for p in own)
    ]
    ac = sum(m.kwh_consumed_ac for m in counted) if overlapping else None
    return BruteEfficiency(
        meter_ids=tuple(sorted({p.meter_id for p in overlapping})),
        dc_kwh=dc,
        ac_kwh=ac,
        efficiency=efficiency_ratio(dc, ac),
        avg_battery_temp=sum(v.battery_temp for v in mine) / len(mine) if mine else None,
        vehicle_readings=len(mine),
        meter_readings=len(counted),
    )


def _period_meets_window(period: MappingPeriod, window: Window) -> bool:
    """Whether [valid_from, valid_to) and (start, end] share at least one microsecond."""
    lo, hi = window.half_open()
    start = period.valid_from or lo
    end = period.valid_to or hi
    return max(start, lo) < min(end, hi)
