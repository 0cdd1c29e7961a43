"""What a write command answers for each item it was given."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from attrs import frozen

from commands.payloads import WireError
from eventstore import Appended, AppendStatus, NewEvent

Clock = Callable[[], datetime]


class Appender(Protocol):
    """Anything that appends events durably and answers per event (``EventStore`` does),
    from a thread or from a coroutine."""

    def append(self, events: Sequence[NewEvent]) -> list[Appended]: ...

    async def append_async(self, events: Sequence[NewEvent]) -> list[Appended]: ...


class Status(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    REJECTED = "rejected"


_FROM_APPEND = {
    AppendStatus.APPENDED: Status.ACCEPTED,
    AppendStatus.DUPLICATE: Status.DUPLICATE,
    AppendStatus.CONFLICT: Status.CONFLICT,
}


@frozen(kw_only=True)
class Outcome:
    """One item's fate; ``event_id``/``position`` are those of the stored event, if any."""

    status: Status
    event_id: uuid.UUID | None = None
    position: int | None = None
    errors: tuple[WireError, ...] = ()

    @classmethod
    def of(cls, appended: Appended) -> Outcome:
        return cls(
            status=_FROM_APPEND[appended.status],
            event_id=appended.event_id,
            position=appended.position,
        )

    @classmethod
    def rejected(cls, errors: list[WireError]) -> Outcome:
        return cls(status=Status.REJECTED, errors=tuple(errors))
