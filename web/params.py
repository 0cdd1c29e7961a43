"""Query parameters, read strictly: unknown or repeated names, malformed values and values
out of range are refused together in one 422 problem that names each parameter."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import falcon
import orjson

from commands.payloads import WireError
from domain.efficiency import Window
from domain.rules import DEVICE_ID
from web.problems import validation_problem

# ISO-8601 durations in days, hours, minutes and seconds: P1D, PT24H, PT90M, P1DT12H.
_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", re.IGNORECASE)
# In a query string "+" means a space, so "+01:00" arrives as " 01:00" unless encoded.
_SPACED_OFFSET = re.compile(r" (\d\d:?\d\d)$")
_EPOCH = re.compile(r"-?\d+(\.\d+)?")


def check_device_id(name: str, value: str) -> str:
    """``value`` when it is a device id, else a 422 problem naming ``name``."""
    if DEVICE_ID.fullmatch(value) is None:
        raise validation_problem(
            [WireError(field=name, message="must be 1 to 64 characters of A-Z a-z 0-9 . _ : -")],
            f"{name} is not a valid device id.",
        )
    return value


class Params:
    """The query parameters of one request; read each with a typed getter, then ``done()``."""

    def __init__(self, req: falcon.Request, allowed: Iterable[str]) -> None:
        self._values: dict[str, Any] = dict(req.params)
        self.errors: list[WireError] = []
        for name in sorted(set(self._values) - set(allowed)):
            self.refuse(name, "is not a known parameter")
        for name, value in sorted(self._values.items()):
            if isinstance(value, list):
                self.refuse(name, "may be given only once")
                self._values[name] = None
            elif "\x00" in value:  # no text column can hold it
                self.refuse(name, "must not contain NUL")
                self._values[name] = None

    def text(self, name: str) -> str | None:
        """The parameter as given (``None`` when absent, or refused already)."""
        value = self._values.get(name)
        return value if isinstance(value, str) else None

    def integer(self, name: str, *, low: int, high: int, default: int | None = None) -> int | None:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.refuse(name, "must be a whole number")
            return default
        if not low <= value <= high:
            self.refuse(name, f"must be between {low} and {high}")
            return default
        return value

    def number(self, name: str, *, low: float, high: float) -> float | None:
        raw = self.text(name)
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            self.refuse(name, "must be a number")
            return None
        if not low <= value <= high:  # also refuses nan
            self.refuse(name, f"must be between {low:g} and {high:g}")
            return None
        return value

    def moment(self, name: str) -> datetime | None:
        """Epoch seconds, or an ISO-8601 date-time with an explicit offset."""
        raw = self.text(name)
        if raw is None:
            return None
        if _EPOCH.fullmatch(raw):
            try:
                return datetime.fromtimestamp(float(raw), UTC)
            except (OverflowError, OSError, ValueError):
                self.refuse(name, "epoch seconds out of range")
                return None
        try:
            moment = datetime.fromisoformat(_SPACED_OFFSET.sub(r"+\1", raw))
        except ValueError:
            self.refuse(name, "must be epoch seconds or an ISO-8601 date-time")
            return None
        if moment.tzinfo is None:
            self.refuse(name, "must carry an explicit offset (e.g. Z, +01:00)")
            return None
        return moment.astimezone(UTC)

    def duration(self, name: str) -> timedelta | None:
        """An ISO-8601 duration in days, hours, minutes and seconds (``PT24H``, ``P1D``)."""
        raw = self.text(name)
        if raw is None:
            return None
        match = _DURATION.fullmatch(raw)
        if match is None or raw.upper() in ("P", "PT") or raw.upper().endswith("T"):
            self.refuse(name, "must be an ISO-8601 duration such as PT24H, P1D or PT90M")
            return None
        days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
        try:
            return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        except OverflowError:
            self.refuse(name, "is too long")
            return None

    def cursor(self, name: str = "cursor") -> dict[str, Any] | None:
        """The position a previous page handed out (see ``encode_cursor``)."""
        raw = self.text(name)
        if raw is None:
            return None
        try:
            value = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        except (binascii.Error, ValueError, orjson.JSONDecodeError):
            value = None
        if not isinstance(value, dict):
            self.refuse(name, "is not a cursor this API handed out")
            return None
        return value

    def refuse(self, name: str, message: str) -> None:
        """Record a problem with ``name``: a getter's, or one the caller found (e.g. between
        two parameters)."""
        self.errors.append(WireError(field=name, message=message))

    def done(self) -> None:
        """Raise one 422 problem listing every refused parameter, if any."""
        if self.errors:
            raise validation_problem(self.errors, "The query parameters are not valid.")


def encode_cursor(position: dict[str, Any]) -> str:
    """An opaque cursor for the next page; ``Params.cursor`` reads it back."""
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def read_window(
    params: Params,
    *,
    now: datetime,
    default: timedelta,
    max_span: timedelta,
    with_duration: bool = True,
) -> Window:
    """The window ``(from, to]`` a read asks for: ``to`` defaults to now, ``from`` to ``to``
    minus ``window`` (an ISO-8601 duration, where allowed) or ``default``."""
    end = params.moment("to") or now
    start = params.moment("from")
    length = params.duration("window") if with_duration else None
    if start is not None and length is not None:
        params.refuse("window", "give either from or window, not both")
    if length is not None and length <= timedelta(0):
        params.refuse("window", "must be longer than zero")
        length = None
    elif length is not None and length > max_span:
        params.refuse("window", f"the range may span at most {_human(max_span)}")
        length = None
    if start is None:
        try:
            start = end - (length or default)
        except OverflowError:
            params.refuse("to", "is too early")
            return Window(start=end, end=end)
    if start >= end:
        params.refuse("from", "must be before to")
    elif end - start > max_span:
        params.refuse("from", f"the range may span at most {_human(max_span)}")
    return Window(start=start, end=end)


def _human(span: timedelta) -> str:
    if span % timedelta(days=1) == timedelta(0):
        return f"{span.days} days"
    return f"{span.total_seconds() / 3600:g} hours"
