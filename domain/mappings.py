"""Which meter feeds which vehicle, over time: the mapping command, event and replacement rules.

A mapping is effective-dated. At any moment a vehicle has at most one meter and a meter at
most one vehicle; a new mapping ends, at its ``effective_from``, the periods it replaces.
The very first mapping of a vehicle and a meter that were never mapped before covers all
of their earlier readings too (``valid_from`` is ``None``: since the beginning), so that
readings posted before the operator got round to mapping still count.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from attrs import evolve, frozen

from domain.readings import EVENT_NAMESPACE, epoch_micros
from domain.rules import FieldError, Rejected, TimeRules, check_device_id, check_time


@frozen(kw_only=True)
class MapVehicleToMeter:
    vehicle_id: str
    meter_id: str
    effective_from: datetime | None = None


@frozen(kw_only=True)
class VehicleMeterMapped:
    """From ``effective_from`` on, ``meter_id`` measures the grid side of ``vehicle_id``."""

    vehicle_id: str
    meter_id: str
    effective_from: datetime


@frozen(kw_only=True)
class MappingPeriod:
    """``meter_id`` fed ``vehicle_id`` during ``[valid_from, valid_to)``; ``None`` is unbounded."""

    vehicle_id: str
    meter_id: str
    valid_from: datetime | None
    valid_to: datetime | None

    def covers(self, moment: datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= moment) and (
            self.valid_to is None or moment < self.valid_to
        )


def map_vehicle_to_meter(
    command: MapVehicleToMeter, *, now: datetime, rules: TimeRules
) -> VehicleMeterMapped:
    """Decide the mapping event (``effective_from`` defaults to ``now``) or raise ``Rejected``."""
    errors: list[FieldError] = []
    check_device_id("vehicle_id", command.vehicle_id, errors)
    check_device_id("meter_id", command.meter_id, errors)
    effective_from = command.effective_from or now
    check_time("effective_from", effective_from, now=now, rules=rules, errors=errors)
    if errors:
        raise Rejected(errors)
    return VehicleMeterMapped(
        vehicle_id=command.vehicle_id,
        meter_id=command.meter_id,
        effective_from=effective_from.astimezone(UTC),
    )


def mapping_event_id(event: VehicleMeterMapped) -> uuid.UUID:
    """Deterministic: one mapping posted twice with one ``effectiveFrom`` is a duplicate."""
    micros = epoch_micros(event.effective_from)
    return uuid.uuid5(EVENT_NAMESPACE, f"mapping/{event.vehicle_id}/{event.meter_id}/{micros}")


def mapping_stream(event: VehicleMeterMapped) -> str:
    return f"vehicle-{event.vehicle_id}-mappings"


def apply_mapping(
    periods: Iterable[MappingPeriod], event: VehicleMeterMapped
) -> list[MappingPeriod]:
    """The mapping periods after ``event``, applied in log order.

    Periods that share neither the vehicle nor the meter are untouched. A period that shares
    one and is in force at ``effective_from`` ends there (and disappears if it started
    exactly then). The new period runs until the next already known period of either device
    starts, so a mapping posted late never overlaps a later one.
    """
    start = event.effective_from
    kept: list[MappingPeriod] = []
    involved: list[MappingPeriod] = []
    for period in periods:
        shares = period.vehicle_id == event.vehicle_id or period.meter_id == event.meter_id
        (involved if shares else kept).append(period)

    end: datetime | None = None
    for period in involved:
        if period.covers(start):
            if period.valid_from is None or period.valid_from < start:
                kept.append(evolve(period, valid_to=start))
        else:
            kept.append(period)
            if period.valid_from is not None and period.valid_from > start:
                end = period.valid_from if end is None else min(end, period.valid_from)

    kept.append(
        MappingPeriod(
            vehicle_id=event.vehicle_id,
            meter_id=event.meter_id,
            valid_from=start if involved else None,
            valid_to=end,
        )
    )
    return kept


def vehicle_of_meter(
    periods: Iterable[MappingPeriod], meter_id: str, moment: datetime
) -> str | None:
    """The vehicle a meter fed at ``moment``, if any."""
    for period in periods:
        if period.meter_id == meter_id and period.covers(moment):
            return period.vehicle_id
    return None
