"""Structuring raw JSON values into domain commands, strictly.

This is the edge of the write side: numbers must be JSON numbers (not strings, booleans or
null), ids must be strings, unknown keys are refused, and a timestamp is either epoch
seconds or an ISO-8601 string that carries its UTC offset. Every problem is reported as a
``WireError`` naming the field as the client spelled it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs
from attrs import frozen
from cattrs import Converter
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn, override

from domain.credentials import IssueToken
from domain.mappings import MapVehicleToMeter
from domain.readings import RecordMeterReading, RecordVehicleReading
from domain.rules import FieldError
from eventstore.codec import camel

T = TypeVar("T")


@frozen(kw_only=True)
class WireError:
    """A refused field (``""`` for the value as a whole) and why, in the client's terms."""

    field: str
    message: str


class Invalid(Exception):
    def __init__(self, errors: list[WireError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


def _number(value: object, _: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"must be a number, not {_json_kind(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError("must be a finite number") from None
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return number


def _text(value: object, _: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be a string, not {_json_kind(value)}")
    return value


def _moment(value: object, _: object) -> datetime:
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be epoch seconds or an ISO-8601 date-time") from None
        if moment.tzinfo is None:
            raise ValueError("ISO-8601 date-time must carry an explicit offset (e.g. Z, +01:00)")
        return moment
    seconds = _number(value, None)
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError("epoch seconds out of range") from None


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a number"


def _build_converter() -> Converter:
    converter = Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(float, _number)
    converter.register_structure_hook(str, _text)
    converter.register_structure_hook(datetime, _moment)
    for cls in (RecordMeterReading, RecordVehicleReading, MapVehicleToMeter, IssueToken):
        renames: dict[str, Any] = {
            a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)
        }
        converter.register_structure_hook(
            cls, make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True, **renames)
        )
    return converter


_CONVERTER = _build_converter()


def _errors_of(exc: BaseException) -> list[WireError]:
    if isinstance(exc, ForbiddenExtraKeysError):
        return [
            WireError(field=key, message="is not a known field") for key in sorted(exc.extra_fields)
        ]
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        errors = [
            WireError(field=camel(note.name), message=_message(inner)) for inner, note in with_notes
        ]
        for inner in without:
            errors.extend(_errors_of(inner))
        return errors
    return [WireError(field="", message=_message(exc))]


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return "is required"
    return str(exc)


def structure(value: object, cls: type[T]) -> T:
    """``value`` as a ``cls`` command, or ``Invalid`` listing every refused field."""
    if not isinstance(value, dict):
        raise Invalid([WireError(field="", message=f"must be an object, not {_json_kind(value)}")])
    try:
        return _CONVERTER.structure(value, cls)
    except (ClassValidationError, ForbiddenExtraKeysError) as exc:
        raise Invalid(_errors_of(exc)) from exc


def reading_command(value: object) -> RecordMeterReading | RecordVehicleReading:
    """The reading command ``value`` describes; its kind is found from the id it carries."""
    if not isinstance(value, dict):
        raise Invalid([WireError(field="", message=f"must be an object, not {_json_kind(value)}")])
    has_meter, has_vehicle = "meterId" in value, "vehicleId" in value
    if has_meter == has_vehicle:
        message = (
            "a reading carries exactly one of meterId and vehicleId, not both"
            if has_meter
            else "a reading needs meterId (meter reading) or vehicleId (vehicle reading)"
        )
        field = "vehicleId" if has_meter else "meterId"
        raise Invalid([WireError(field=field, message=message)])
    exact = _exact_meter(value) if has_meter else _exact_vehicle(value)
    if exact is not None:
        return exact
    cls: type[RecordMeterReading | RecordVehicleReading] = (
        RecordMeterReading if has_meter else RecordVehicleReading
    )
    return structure(value, cls)


# The fast path of the hot command: a reading of exactly the fields and kinds ``structure``
# accepts is built directly, through the same hooks (a third of a reading's Python time
# was cattrs' detailed validation). Anything else, wrong or missing, goes through
# ``structure``, which names every refused field.
_METER_FIELDS = frozenset({"meterId", "kwhConsumedAc", "voltage", "timestamp"})
_VEHICLE_FIELDS = frozenset({"vehicleId", "soc", "kwhDeliveredDc", "batteryTemp", "timestamp"})
_VEHICLE_FIELDS_WITH_CHARGER = _VEHICLE_FIELDS | {"chargerId"}


def _exact_meter(value: dict[str, object]) -> RecordMeterReading | None:
    if value.keys() != _METER_FIELDS:
        return None
    try:
        return RecordMeterReading(
            meter_id=_text(value["meterId"], None),
            kwh_consumed_ac=_number(value["kwhConsumedAc"], None),
            voltage=_number(value["voltage"], None),
            timestamp=_moment(value["timestamp"], None),
        )
    except (TypeError, ValueError):
        return None


def _exact_vehicle(value: dict[str, object]) -> RecordVehicleReading | None:
    keys = value.keys()
    if keys != _VEHICLE_FIELDS and keys != _VEHICLE_FIELDS_WITH_CHARGER:
        return None
    charger = value.get("chargerId")
    try:
        return RecordVehicleReading(
            vehicle_id=_text(value["vehicleId"], None),
            soc=_number(value["soc"], None),
            kwh_delivered_dc=_number(value["kwhDeliveredDc"], None),
            battery_temp=_number(value["batteryTemp"], None),
            timestamp=_moment(value["timestamp"], None),
            charger_id=None if charger is None else _text(charger, None),
        )
    except (TypeError, ValueError):
        return None


def wire_errors(errors: tuple[FieldError, ...]) -> list[WireError]:
    """Domain rule violations renamed to the client's field names."""
    return [WireError(field=camel(e.field), message=e.message) for e in errors]
