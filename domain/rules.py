"""Validation rules shared by every reading and mapping, and the error they raise."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from attrs import frozen

DEVICE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# A battery outside this range is not one a vehicle can charge: -60 °C is colder than any
# inhabited place, 100 °C is past every cell chemistry's thermal runaway onset.
BATTERY_TEMP_MIN = -60.0
BATTERY_TEMP_MAX = 100.0
SOC_MIN = 0.0
SOC_MAX = 100.0


@frozen(kw_only=True)
class FieldError:
    """One reason a value was refused; ``field`` is the domain attribute name."""

    field: str
    message: str


class Rejected(Exception):
    """A command broke one or more domain rules; nothing was decided."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = tuple(errors)


@frozen(kw_only=True)
class TimeRules:
    """How far from the server clock a device timestamp may be.

    Readings from the future are refused past a small clock-skew allowance; how late a
    reading may arrive is a deployment decision (backfills and offline uploads are normal).
    """

    earliest: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    future_tolerance: timedelta = timedelta(minutes=5)


def check_device_id(field: str, value: str, errors: list[FieldError]) -> None:
    if DEVICE_ID.fullmatch(value) is None:
        errors.append(
            FieldError(field=field, message="must be 1 to 64 characters of A-Z a-z 0-9 . _ : -")
        )


def check_energy(field: str, value: float, errors: list[FieldError]) -> None:
    if not math.isfinite(value) or value < 0:
        errors.append(FieldError(field=field, message="must be a finite number >= 0 (kWh)"))


def check_range(
    field: str, value: float, low: float, high: float, unit: str, errors: list[FieldError]
) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        errors.append(
            FieldError(field=field, message=f"must be between {low:g} and {high:g} {unit}")
        )


def check_time(
    field: str, value: datetime, *, now: datetime, rules: TimeRules, errors: list[FieldError]
) -> None:
    if value.tzinfo is None:
        errors.append(FieldError(field=field, message="must carry an explicit UTC offset"))
    elif value > now + rules.future_tolerance:
        minutes = rules.future_tolerance.total_seconds() / 60
        errors.append(
            FieldError(field=field, message=f"is more than {minutes:g} minutes in the future")
        )
    elif value < rules.earliest:
        errors.append(
            FieldError(
                field=field, message=f"is before the earliest accepted {rules.earliest.isoformat()}"
            )
        )
