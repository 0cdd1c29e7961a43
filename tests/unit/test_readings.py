"""Reading rules, decided without a database."""

from __future__ import annotations

import math
import pickle
import uuid
from datetime import UTC, datetime, timedelta, timezone

import attrs
import pytest
from hypothesis import given

from domain.readings import (
    EVENT_NAMESPACE,
    MeterReadingRecorded,
    RecordMeterReading,
    RecordVehicleReading,
    VehicleReadingRecorded,
    reading_event_id,
    reading_identity,
    reading_stream,
    record_meter_reading,
    record_vehicle_reading,
)
from domain.rules import Rejected, TimeRules
from tests.strategies import meter_readings, vehicle_readings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
RULES = TimeRules()

METER = RecordMeterReading(meter_id="M1", kwh_consumed_ac=15.5, voltage=230.2, timestamp=NOW)
VEHICLE = RecordVehicleReading(
    vehicle_id="V1", soc=80, kwh_delivered_dc=12.3, battery_temp=34.5, timestamp=NOW
)


def fields_refused(error: Rejected) -> set[str]:
    return {e.field for e in error.errors}


def test_a_valid_meter_reading_becomes_its_event() -> None:
    assert record_meter_reading(METER, now=NOW, rules=RULES) == MeterReadingRecorded(
        meter_id="M1", kwh_consumed_ac=15.5, voltage=230.2, timestamp=NOW
    )


def test_a_valid_vehicle_reading_becomes_its_event() -> None:
    assert record_vehicle_reading(VEHICLE, now=NOW, rules=RULES) == VehicleReadingRecorded(
        vehicle_id="V1", soc=80.0, kwh_delivered_dc=12.3, battery_temp=34.5, timestamp=NOW
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"meter_id": ""}, "meter_id"),
        ({"meter_id": "x" * 65}, "meter_id"),
        ({"meter_id": "M 1"}, "meter_id"),
        ({"meter_id": "M/1"}, "meter_id"),
        ({"kwh_consumed_ac": -0.001}, "kwh_consumed_ac"),
        ({"kwh_consumed_ac": math.inf}, "kwh_consumed_ac"),
        ({"kwh_consumed_ac": math.nan}, "kwh_consumed_ac"),
        ({"voltage": 0.0}, "voltage"),
        ({"voltage": -230.0}, "voltage"),
        ({"voltage": math.inf}, "voltage"),
        ({"timestamp": NOW + timedelta(minutes=5, seconds=1)}, "timestamp"),
        ({"timestamp": datetime(1999, 12, 31, 23, 59, tzinfo=UTC)}, "timestamp"),
        ({"timestamp": datetime(2026, 6, 1, 12, 0)}, "timestamp"),
    ],
)
def test_a_meter_reading_breaking_a_rule_is_rejected_naming_the_field(
    change: dict[str, object], field: str
) -> None:
    with pytest.raises(Rejected) as refused:
        record_meter_reading(attrs.evolve(METER, **change), now=NOW, rules=RULES)
    assert fields_refused(refused.value) == {field}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"vehicle_id": ""}, "vehicle_id"),
        ({"soc": -0.1}, "soc"),
        ({"soc": 100.1}, "soc"),
        ({"kwh_delivered_dc": -1.0}, "kwh_delivered_dc"),
        ({"battery_temp": -60.1}, "battery_temp"),
        ({"battery_temp": 100.1}, "battery_temp"),
        ({"battery_temp": math.nan}, "battery_temp"),
    ],
)
def test_a_vehicle_reading_breaking_a_rule_is_rejected_naming_the_field(
    change: dict[str, object], field: str
) -> None:
    with pytest.raises(Rejected) as refused:
        record_vehicle_reading(attrs.evolve(VEHICLE, **change), now=NOW, rules=RULES)
    assert fields_refused(refused.value) == {field}


def test_every_broken_rule_is_reported_at_once() -> None:
    bad = RecordVehicleReading(
        vehicle_id="", soc=101, kwh_delivered_dc=-1, battery_temp=500, timestamp=NOW
    )
    with pytest.raises(Rejected) as refused:
        record_vehicle_reading(bad, now=NOW, rules=RULES)
    assert fields_refused(refused.value) == {
        "vehicle_id",
        "soc",
        "kwh_delivered_dc",
        "battery_temp",
    }


def test_the_boundaries_of_each_range_are_accepted() -> None:
    edge = RecordVehicleReading(
        vehicle_id="a" * 64,
        soc=0,
        kwh_delivered_dc=0,
        battery_temp=-60,
        timestamp=NOW + timedelta(minutes=5),
    )
    assert record_vehicle_reading(edge, now=NOW, rules=RULES).soc == 0.0
    full = attrs.evolve(edge, soc=100, battery_temp=100, timestamp=RULES.earliest)
    assert record_vehicle_reading(full, now=NOW, rules=RULES).soc == 100.0


def test_how_late_a_reading_may_be_is_a_setting() -> None:
    strict = TimeRules(earliest=datetime(2026, 1, 1, tzinfo=UTC))
    old = attrs.evolve(METER, timestamp=datetime(2025, 12, 31, tzinfo=UTC))
    assert record_meter_reading(old, now=NOW, rules=RULES).timestamp == old.timestamp
    with pytest.raises(Rejected):
        record_meter_reading(old, now=NOW, rules=strict)


def test_timestamps_are_normalised_to_utc() -> None:
    local = datetime(2026, 6, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    event = record_meter_reading(attrs.evolve(METER, timestamp=local), now=NOW, rules=RULES)
    assert event.timestamp == NOW and event.timestamp.utcoffset() == timedelta(0)


@given(meter_readings)
def test_a_meter_event_id_depends_only_on_device_and_timestamp(event: MeterReadingRecorded) -> None:
    other_values = attrs.evolve(event, kwh_consumed_ac=event.kwh_consumed_ac + 1, voltage=1.0)
    same_moment_elsewhere = attrs.evolve(
        event, timestamp=event.timestamp.astimezone(timezone(timedelta(hours=-5)))
    )
    assert reading_event_id(event) == reading_event_id(other_values)
    assert reading_event_id(event) == reading_event_id(same_moment_elsewhere)
    assert reading_event_id(event) != reading_event_id(
        attrs.evolve(event, timestamp=event.timestamp + timedelta(microseconds=1))
    )
    assert reading_event_id(event) != reading_event_id(
        attrs.evolve(event, meter_id=event.meter_id + "x")
    )


@given(vehicle_readings)
def test_vehicle_and_meter_ids_never_collide(event: VehicleReadingRecorded) -> None:
    as_meter = MeterReadingRecorded(
        meter_id=event.vehicle_id, kwh_consumed_ac=1.0, voltage=1.0, timestamp=event.timestamp
    )
    assert reading_event_id(event) != reading_event_id(as_meter)
    assert reading_stream(event) == f"vehicle-{event.vehicle_id}"
    assert reading_stream(as_meter) == f"meter-{event.vehicle_id}"


@given(meter_readings, vehicle_readings)
def test_event_ids_are_the_uuid5_of_kind_device_and_microseconds(
    meter: MeterReadingRecorded, vehicle: VehicleReadingRecorded
) -> None:
    for kind, device, event in (
        ("meter", meter.meter_id, meter),
        ("vehicle", vehicle.vehicle_id, vehicle),
    ):
        micros = round(
            (event.timestamp - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)
        )
        expected = uuid.uuid5(EVENT_NAMESPACE, f"{kind}/{device}/{micros}")
        event_id = reading_event_id(event)
        assert event_id == expected
        # Built without UUID.__init__: it must behave as one built the usual way.
        assert (str(event_id), hash(event_id), event_id.version) == (
            str(expected),
            hash(expected),
            5,
        )
        assert event_id.variant == uuid.RFC_4122
        assert event_id.is_safe is uuid.SafeUUID.unknown
        assert pickle.loads(pickle.dumps(event_id)) == expected
        assert reading_identity(event) == (expected, f"{kind}-{device}")


def test_a_stored_reading_keeps_its_event_id_across_versions() -> None:
    # Ids already in the log must come out the same forever, or a device's retry after an
    # upgrade would be stored twice.
    event = record_meter_reading(METER, now=NOW, rules=RULES)
    assert reading_event_id(event) == uuid.UUID("5be8e530-8ad0-5423-be46-c4cf76f45a27")
