"""Strict structuring of raw JSON values into commands at the write side's edge."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from commands.payloads import Invalid, reading_command, structure
from domain.mappings import MapVehicleToMeter
from domain.readings import RecordMeterReading, RecordVehicleReading

METER = {"meterId": "M1", "kwhConsumedAc": 15.5, "voltage": 230.2, "timestamp": 1700000000}
VEHICLE = {
    "vehicleId": "V1",
    "soc": 80,
    "kwhDeliveredDc": 12.3,
    "batteryTemp": 34.5,
    "timestamp": 1700000000,
}


def refused(value: object) -> dict[str, str]:
    with pytest.raises(Invalid) as error:
        reading_command(value)
    return {e.field: e.message for e in error.value.errors}


def test_the_original_api_payloads_are_understood() -> None:
    moment = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert reading_command(METER) == RecordMeterReading(
        meter_id="M1", kwh_consumed_ac=15.5, voltage=230.2, timestamp=moment
    )
    assert reading_command(VEHICLE) == RecordVehicleReading(
        vehicle_id="V1", soc=80.0, kwh_delivered_dc=12.3, battery_temp=34.5, timestamp=moment
    )


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (1700000000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (1700000000.25, datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=UTC)),
        ("2023-11-14T22:13:20Z", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("2023-11-14T23:13:20+01:00", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
    ],
)
def test_timestamps_are_epoch_seconds_or_iso_with_offset(
    timestamp: object, expected: datetime
) -> None:
    assert reading_command({**METER, "timestamp": timestamp}).timestamp == expected


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kwhConsumedAc": "15.5"}, "kwhConsumedAc"),
        ({"kwhConsumedAc": True}, "kwhConsumedAc"),
        ({"kwhConsumedAc": None}, "kwhConsumedAc"),
        ({"voltage": [230]}, "voltage"),
        ({"meterId": 17}, "meterId"),
        ({"timestamp": "2023-11-14T22:13:20"}, "timestamp"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": False}, "timestamp"),
        ({"timestamp": 1e20}, "timestamp"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_values_of_the_wrong_kind_are_refused_naming_the_field(
    change: dict[str, object], field: str
) -> None:
    assert field in refused({**METER, **change})


def test_a_missing_field_is_named() -> None:
    body = dict(VEHICLE)
    del body["batteryTemp"]
    assert refused(body) == {"batteryTemp": "is required"}


def test_both_or_neither_id_is_refused() -> None:
    assert "vehicleId" in refused({**METER, "vehicleId": "V1"})
    assert "meterId" in refused({"kwhConsumedAc": 1, "voltage": 1, "timestamp": 1})
    assert "meterId" in refused({})


@pytest.mark.parametrize("value", [None, 5, "text", [METER], True])
def test_a_reading_must_be_an_object(value: object) -> None:
    errors = refused(value)
    assert list(errors) == [""]
    assert "must be an object" in errors[""]


def test_mapping_effective_from_is_optional() -> None:
    assert structure({"vehicleId": "V1", "meterId": "M1"}, MapVehicleToMeter).effective_from is None
    with pytest.raises(Invalid):
        structure(
            {"vehicleId": "V1", "meterId": "M1", "effectiveFrom": "2026-01-01"}, MapVehicleToMeter
        )


JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(),
    st.text(max_size=6),
    st.sampled_from(
        ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00+02:00", "2026-01-01T00:00:00", "x", ""]
    ),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
VEHICLE_WITH_CHARGER = {**VEHICLE, "chargerId": "C1"}


@st.composite
def reading_like(draw: st.DrawFn) -> dict[str, object]:
    """A valid reading, then some of its values replaced, keys dropped or keys added."""
    value = dict(draw(st.sampled_from([METER, VEHICLE, VEHICLE_WITH_CHARGER])))
    # Mostly one change, so that each field's every kind of wrong value is met alone.
    changes = draw(st.sampled_from([0, 1, 1, 1, 2]))
    for key in draw(st.lists(st.sampled_from(sorted(value)), min_size=changes, max_size=changes)):
        if draw(st.integers(0, 3)):
            value[key] = draw(JSON_VALUES)
        else:
            value.pop(key, None)
    if draw(st.integers(0, 5)) == 0:
        value[draw(st.sampled_from(["chargerId", "extra", "soc", "voltage"]))] = draw(JSON_VALUES)
    return value


def outcome_of(call: Callable[[], object]) -> tuple[str, object]:
    try:
        return ("command", call())
    except Invalid as exc:
        return ("invalid", exc.errors)


@settings(max_examples=400)
@given(value=reading_like())
def test_the_fast_path_builds_exactly_what_cattrs_builds_and_refuses_what_it_refuses(
    value: dict[str, object],
) -> None:
    has_meter, has_vehicle = "meterId" in value, "vehicleId" in value
    assume(has_meter != has_vehicle)  # both or neither: refused before either path
    cls = RecordMeterReading if has_meter else RecordVehicleReading
    assert outcome_of(lambda: reading_command(value)) == outcome_of(lambda: structure(value, cls))
