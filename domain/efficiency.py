"""Charging efficiency: DC energy into the battery over AC energy drawn from the grid."""

from __future__ import annotations

from datetime import datetime, timedelta

from attrs import frozen

DEFAULT_WINDOW = timedelta(hours=24)
# Below this a charger, cable or battery is likely faulty; a setting on the read side.
DEFAULT_LOW_THRESHOLD = 0.75
_MICROSECOND = timedelta(microseconds=1)


@frozen(kw_only=True)
class Window:
    """The window ``(start, end]``: a reading at ``end`` counts, one at ``start`` does not."""

    start: datetime
    end: datetime

    @classmethod
    def ending(cls, end: datetime, length: timedelta = DEFAULT_WINDOW) -> Window:
        return cls(start=end - length, end=end)

    def half_open(self) -> tuple[datetime, datetime]:
        """The same window as ``[lo, hi)``: timestamps are whole microseconds."""
        return self.start + _MICROSECOND, self.end + _MICROSECOND

    def contains(self, moment: datetime) -> bool:
        return self.start < moment <= self.end


def efficiency_ratio(dc_kwh: float, ac_kwh: float | None) -> float | None:
    """``dc / ac`` as a ratio; ``None`` when there is no AC energy to divide by."""
    if ac_kwh is None or ac_kwh == 0:
        return None
    return dc_kwh / ac_kwh


def above_one(ratio: float | None) -> bool:
    """More energy into the battery than from the grid: physically impossible, so a data fault."""
    return ratio is not None and ratio > 1.0


def below_threshold(ratio: float | None, threshold: float = DEFAULT_LOW_THRESHOLD) -> bool:
    return ratio is not None and ratio < threshold
