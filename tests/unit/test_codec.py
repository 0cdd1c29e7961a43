"""The codec turns every domain event into a stored payload and back, unchanged."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given

from domain.events import EVENT_TYPES, UPCASTERS
from domain.readings import MeterReadingRecorded, VehicleReadingRecorded
from eventstore import Codec, StoredEvent, UnknownEventType
from tests.strategies import events

CODEC = Codec(EVENT_TYPES, UPCASTERS)
RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)


def stored(new_event, *, event_type=None, version=None) -> StoredEvent:  # type: ignore[no-untyped-def]
    return StoredEvent(
        position=1,
        transaction_id=1,
        event_id=new_event.event_id,
        stream_id=new_event.stream_id,
        event_type=event_type or new_event.event_type,
        schema_version=version or new_event.schema_version,
        payload=new_event.payload,
        metadata=new_event.metadata,
        received_at=new_event.received_at,
    )


@given(events)
def test_every_event_type_round_trips_through_the_codec(event: object) -> None:
    encoded = CODEC.encode(
        event, event_id=uuid.uuid4(), stream_id="s", metadata={}, received_at=RECEIVED
    )
    assert CODEC.decode(stored(encoded)) == event


@given(events)
def test_payload_keys_are_the_camel_case_api_names(event: object) -> None:
    payload = CODEC.payload(event)
    assert all("_" not in key for key in payload)
    assert set(payload) & {"meterId", "vehicleId"}


def test_events_are_stored_under_their_catalogue_name_and_version() -> None:
    event = MeterReadingRecorded(
        meter_id="M1", kwh_consumed_ac=1.0, voltage=230.0, timestamp=RECEIVED
    )
    encoded = CODEC.encode(
        event, event_id=uuid.uuid4(), stream_id="meter-M1", metadata={}, received_at=RECEIVED
    )
    assert (encoded.event_type, encoded.schema_version) == ("MeterReadingRecorded", 1)
    assert encoded.payload == {
        "meterId": "M1",
        "kwhConsumedAc": 1.0,
        "voltage": 230.0,
        "timestamp": "2026-01-01T00:00:00+00:00",
    }


def test_an_unknown_event_type_is_refused_by_name() -> None:
    event = MeterReadingRecorded(
        meter_id="M1", kwh_consumed_ac=1.0, voltage=1.0, timestamp=RECEIVED
    )
    encoded = CODEC.encode(
        event, event_id=uuid.uuid4(), stream_id="s", metadata={}, received_at=RECEIVED
    )
    with pytest.raises(UnknownEventType, match="Nonsense"):
        CODEC.decode(stored(encoded, event_type="Nonsense"))


def test_an_older_schema_version_is_upcast_before_it_is_read() -> None:
    def v1_to_v2(payload: dict) -> dict:  # type: ignore[type-arg]
        renamed = {key: value for key, value in payload.items() if key != "volts"}
        return {**renamed, "voltage": payload["volts"]}

    codec = Codec(
        {MeterReadingRecorded: ("MeterReadingRecorded", 2)},
        upcasters={("MeterReadingRecorded", 1): v1_to_v2},
    )
    old = StoredEvent(
        position=1,
        transaction_id=1,
        event_id=uuid.uuid4(),
        stream_id="meter-M1",
        event_type="MeterReadingRecorded",
        schema_version=1,
        payload={
            "meterId": "M1",
            "kwhConsumedAc": 2.0,
            "volts": 231.0,
            "timestamp": "2026-01-01T00:00:00+00:00",
        },
        metadata={},
        received_at=RECEIVED,
    )
    assert codec.decode(old) == MeterReadingRecorded(
        meter_id="M1", kwh_consumed_ac=2.0, voltage=231.0, timestamp=RECEIVED
    )


def test_a_version_newer_than_the_code_is_refused() -> None:
    event = MeterReadingRecorded(
        meter_id="M1", kwh_consumed_ac=1.0, voltage=1.0, timestamp=RECEIVED
    )
    encoded = CODEC.encode(
        event, event_id=uuid.uuid4(), stream_id="s", metadata={}, received_at=RECEIVED
    )
    with pytest.raises(UnknownEventType, match="newer"):
        CODEC.decode(stored(encoded, version=7))


def test_a_vehicle_reading_stored_at_version_1_is_read_as_version_2_without_a_charger() -> None:
    v1 = StoredEvent(
        position=1,
        transaction_id=1,
        event_id=uuid.uuid4(),
        stream_id="vehicle-V1",
        event_type="VehicleReadingRecorded",
        schema_version=1,
        payload={
            "vehicleId": "V1",
            "soc": 80.0,
            "kwhDeliveredDc": 12.3,
            "batteryTemp": 34.5,
            "timestamp": "2026-01-01T00:00:00+00:00",
        },
        metadata={},
        received_at=RECEIVED,
    )
    assert CODEC.decode(v1) == VehicleReadingRecorded(
        vehicle_id="V1",
        soc=80.0,
        kwh_delivered_dc=12.3,
        battery_temp=34.5,
        timestamp=RECEIVED,
        charger_id=None,
    )
    assert CODEC.upcast("VehicleReadingRecorded", 1, v1.payload) == {
        **v1.payload,
        "chargerId": None,
    }
