"""Mapping replacement rules, decided without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import combinations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.mappings import (
    MappingPeriod,
    MapVehicleToMeter,
    VehicleMeterMapped,
    apply_mapping,
    map_vehicle_to_meter,
    vehicle_of_meter,
)
from domain.rules import Rejected, TimeRules
from tests.strategies import small_mappings

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


def mapped(vehicle: str, meter: str, hours: int) -> VehicleMeterMapped:
    return VehicleMeterMapped(vehicle_id=vehicle, meter_id=meter, effective_from=at(hours))


def replay(*events: VehicleMeterMapped) -> list[MappingPeriod]:
    periods: list[MappingPeriod] = []
    for event in events:
        periods = apply_mapping(periods, event)
    return periods


def overlap(a: MappingPeriod, b: MappingPeriod) -> bool:
    a_from = a.valid_from or datetime.min.replace(tzinfo=UTC)
    b_from = b.valid_from or datetime.min.replace(tzinfo=UTC)
    a_to = a.valid_to or datetime.max.replace(tzinfo=UTC)
    b_to = b.valid_to or datetime.max.replace(tzinfo=UTC)
    return a_from < b_to and b_from < a_to


def test_the_first_mapping_of_new_devices_covers_their_earlier_readings() -> None:
    [period] = replay(mapped("V1", "M1", 5))
    assert period.valid_from is None and period.valid_to is None
    assert vehicle_of_meter([period], "M1", at(-1000)) == "V1"


def test_a_new_meter_for_a_vehicle_ends_the_old_one_at_its_effective_time() -> None:
    periods = replay(mapped("V1", "M1", 0), mapped("V1", "M2", 3))
    assert vehicle_of_meter(periods, "M1", at(2)) == "V1"
    assert vehicle_of_meter(periods, "M1", at(3)) is None
    assert vehicle_of_meter(periods, "M2", at(3)) == "V1"
    assert vehicle_of_meter(periods, "M2", at(2)) is None


def test_a_meter_moved_to_another_vehicle_leaves_the_first_without_a_meter() -> None:
    periods = replay(mapped("V1", "M1", 0), mapped("V2", "M1", 4))
    assert vehicle_of_meter(periods, "M1", at(3)) == "V1"
    assert vehicle_of_meter(periods, "M1", at(4)) == "V2"
    assert [p for p in periods if p.vehicle_id == "V1"][0].valid_to == at(4)


def test_a_late_posted_mapping_stops_where_a_later_known_one_starts() -> None:
    periods = replay(mapped("V1", "M1", 0), mapped("V1", "M2", 10), mapped("V1", "M3", 5))
    assert vehicle_of_meter(periods, "M1", at(4)) == "V1"
    assert vehicle_of_meter(periods, "M3", at(5)) == "V1"
    assert vehicle_of_meter(periods, "M3", at(9)) == "V1"
    assert vehicle_of_meter(periods, "M3", at(10)) is None
    assert vehicle_of_meter(periods, "M2", at(10)) == "V1"


def test_a_mapping_at_the_same_moment_replaces_the_one_it_meets() -> None:
    periods = replay(mapped("V1", "M1", 0), mapped("V1", "M2", 2), mapped("V1", "M3", 2))
    assert vehicle_of_meter(periods, "M2", at(2)) is None
    assert vehicle_of_meter(periods, "M3", at(2)) == "V1"
    assert not [p for p in periods if p.meter_id == "M2"]


@given(st.lists(small_mappings(), max_size=12))
def test_a_vehicle_and_a_meter_each_have_at_most_one_partner_at_any_moment(
    events: list[VehicleMeterMapped],
) -> None:
    periods = replay(*events)
    for a, b in combinations(periods, 2):
        if a.vehicle_id == b.vehicle_id or a.meter_id == b.meter_id:
            assert not overlap(a, b), (a, b)
    for period in periods:
        if period.valid_from is not None and period.valid_to is not None:
            assert period.valid_from < period.valid_to


@given(st.lists(small_mappings(), min_size=1, max_size=12))
def test_the_latest_mapping_holds_from_its_effective_time(events: list[VehicleMeterMapped]) -> None:
    last = events[-1]
    periods = replay(*events)
    assert vehicle_of_meter(periods, last.meter_id, last.effective_from) == last.vehicle_id


def test_map_command_defaults_effective_from_to_now() -> None:
    event = map_vehicle_to_meter(
        MapVehicleToMeter(vehicle_id="V1", meter_id="M1"), now=T0, rules=TimeRules()
    )
    assert event == VehicleMeterMapped(vehicle_id="V1", meter_id="M1", effective_from=T0)


def test_map_command_refuses_bad_ids_and_future_times() -> None:
    with pytest.raises(Rejected) as refused:
        map_vehicle_to_meter(
            MapVehicleToMeter(vehicle_id="", meter_id="M 1", effective_from=at(1)),
            now=T0,
            rules=TimeRules(),
        )
    assert {e.field for e in refused.value.errors} == {"vehicle_id", "meter_id", "effective_from"}
