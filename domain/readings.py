"""Meter (AC, grid side) and vehicle (DC, battery side) readings: commands, events, rules."""

from __future__ import annotations

import hashlib
import math
import uuid
from datetime import UTC, datetime

from attrs import frozen

from domain.rules import (
    BATTERY_TEMP_MAX,
    BATTERY_TEMP_MIN,
    SOC_MAX,
    SOC_MIN,
    FieldError,
    Rejected,
    TimeRules,
    check_device_id,
    check_energy,
    check_range,
    check_time,
)

# Namespace of every deterministic event id; changing it would break idempotency of retries.
EVENT_NAMESPACE = uuid.UUID("6f1c1a8e-3f0b-5b8e-9a55-0d1e5e7c2a10")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAMESPACE_SHA1 = hashlib.sha1(EVENT_NAMESPACE.bytes, usedforsecurity=False)
# RFC 4122 version 5, variant 10: the bits ``uuid.UUID(..., version=5)`` sets.
_UUID5_KEEP = ~((0xF000 << 64) | (0xC000 << 48))
_UUID5_SET = (5 << 76) | (0x8000 << 48)


@frozen(kw_only=True)
class RecordMeterReading:
    meter_id: str
    kwh_consumed_ac: float
    voltage: float
    timestamp: datetime


@frozen(kw_only=True)
class RecordVehicleReading:
    vehicle_id: str
    soc: float
    kwh_delivered_dc: float
    battery_temp: float
    timestamp: datetime
    charger_id: str | None = None


@frozen(kw_only=True)
class MeterReadingRecorded:
    """A meter drew ``kwh_consumed_ac`` from the grid in the interval ending at ``timestamp``."""

    meter_id: str
    kwh_consumed_ac: float
    voltage: float
    timestamp: datetime


@frozen(kw_only=True)
class VehicleReadingRecorded:
    """A battery took in ``kwh_delivered_dc`` in the interval ending at ``timestamp``.

    Schema version 2 added ``charger_id``, the charger the vehicle was plugged into (when
    the gateway knows it); readings stored at version 1 are read with ``None``.
    """

    vehicle_id: str
    soc: float
    kwh_delivered_dc: float
    battery_temp: float
    timestamp: datetime
    charger_id: str | None = None


Reading = MeterReadingRecorded | VehicleReadingRecorded


def record_meter_reading(
    command: RecordMeterReading, *, now: datetime, rules: TimeRules
) -> MeterReadingRecorded:
    """Decide the event for a meter reading, or raise ``Rejected`` with every broken rule."""
    errors: list[FieldError] = []
    check_device_id("meter_id", command.meter_id, errors)
    check_energy("kwh_consumed_ac", command.kwh_consumed_ac, errors)
    if not (math.isfinite(command.voltage) and command.voltage > 0):
        errors.append(FieldError(field="voltage", message="must be a finite number > 0 (V)"))
    check_time("timestamp", command.timestamp, now=now, rules=rules, errors=errors)
    if errors:
        raise Rejected(errors)
    return MeterReadingRecorded(
        meter_id=command.meter_id,
        kwh_consumed_ac=float(command.kwh_consumed_ac),
        voltage=float(command.voltage),
        timestamp=_normalise(command.timestamp),
    )


def record_vehicle_reading(
    command: RecordVehicleReading, *, now: datetime, rules: TimeRules
) -> VehicleReadingRecorded:
    """Decide the event for a vehicle reading, or raise ``Rejected`` with every broken rule."""
    errors: list[FieldError] = []
    check_device_id("vehicle_id", command.vehicle_id, errors)
    check_range("soc", command.soc, SOC_MIN, SOC_MAX, "%", errors)
    check_energy("kwh_delivered_dc", command.kwh_delivered_dc, errors)
    check_range(
        "battery_temp", command.battery_temp, BATTERY_TEMP_MIN, BATTERY_TEMP_MAX, "°C", errors
    )
    check_time("timestamp", command.timestamp, now=now, rules=rules, errors=errors)
    if command.charger_id is not None:
        check_device_id("charger_id", command.charger_id, errors)
    if errors:
        raise Rejected(errors)
    return VehicleReadingRecorded(
        vehicle_id=command.vehicle_id,
        soc=float(command.soc),
        kwh_delivered_dc=float(command.kwh_delivered_dc),
        battery_temp=float(command.battery_temp),
        timestamp=_normalise(command.timestamp),
        charger_id=command.charger_id,
    )


def _normalise(moment: datetime) -> datetime:
    """UTC at microsecond precision: the form in which a timestamp is a natural key."""
    return moment.astimezone(UTC)


def epoch_micros(moment: datetime) -> int:
    """Whole microseconds since 1970-01-01 UTC, exact (no float rounding)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def reading_key(event: Reading) -> tuple[str, str, int]:
    """The natural key of a reading: (kind, device id, timestamp in epoch microseconds)."""
    if isinstance(event, MeterReadingRecorded):
        return ("meter", event.meter_id, epoch_micros(event.timestamp))
    return ("vehicle", event.vehicle_id, epoch_micros(event.timestamp))


def _uuid5(name: str) -> uuid.UUID:
    """``uuid.uuid5(EVENT_NAMESPACE, name)``, built without ``UUID.__init__``'s argument
    checks (half the cost of an event id): the value is a valid version-5 UUID by
    construction. ``UUID`` keeps its state in the slots ``int`` and ``is_safe``, which is
    how ``copy`` and ``pickle`` rebuild one too."""
    digest = _NAMESPACE_SHA1.copy()
    digest.update(name.encode())
    event_id = _new_uuid(uuid.UUID)
    _set_slot(event_id, "int", int.from_bytes(digest.digest()[:16]) & _UUID5_KEEP | _UUID5_SET)
    _set_slot(event_id, "is_safe", uuid.SafeUUID.unknown)
    return event_id


_new_uuid = object.__new__
_set_slot = object.__setattr__


def reading_identity(event: Reading) -> tuple[uuid.UUID, str]:
    """``(reading_event_id(event), reading_stream(event))``, the natural key taken once.

    The event id is a pure function of the natural key, so a device's retry maps onto the
    stored event: ``uuid.uuid5(EVENT_NAMESPACE, "kind/device/micros")``, with the namespace
    hashed once."""
    kind, device, micros = reading_key(event)
    return _uuid5(f"{kind}/{device}/{micros}"), _stream_id(kind, device)


def reading_event_id(event: Reading) -> uuid.UUID:
    """The reading's event id (see ``reading_identity``)."""
    return reading_identity(event)[0]


def reading_stream(event: Reading) -> str:
    """``meter-M1`` or ``vehicle-V1``: one stream per device."""
    kind, device, _ = reading_key(event)
    return _stream_id(kind, device)


def _stream_id(kind: str, device: str) -> str:
    return f"{kind}-{device}"
