"""Ingest readings: validate each item, decide its event, append all valid ones together."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from commands.outcomes import Appender, Clock, Outcome
from commands.payloads import Invalid, WireError, reading_command, wire_errors
from domain.events import EVENT_TYPES, UPCASTERS
from domain.readings import (
    Reading,
    RecordMeterReading,
    reading_identity,
    record_meter_reading,
    record_vehicle_reading,
)
from domain.rules import Rejected, TimeRules
from eventstore import Appended, Codec, NewEvent

CODEC = Codec(EVENT_TYPES, UPCASTERS)


def reading_record(event: Reading, *, metadata: dict[str, Any], received_at: datetime) -> NewEvent:
    """A reading as the log stores it: its id derived from its content (a repeat is a
    duplicate), its stream its device's."""
    event_id, stream_id = reading_identity(event)
    return CODEC.encode(
        event,
        event_id=event_id,
        stream_id=stream_id,
        metadata=metadata,
        received_at=received_at,
    )


class Decided:
    """Readings judged but not yet stored: the events to append, and each item's outcome
    (for a rejected item) or the place its append answer fills."""

    __slots__ = ("_outcomes", "_slots", "events")

    def __init__(self, size: int) -> None:
        self._outcomes: list[Outcome | None] = [None] * size
        self._slots: list[int] = []
        self.events: list[NewEvent] = []

    def reject(self, index: int, errors: list[WireError]) -> None:
        self._outcomes[index] = Outcome.rejected(errors)

    def accept(self, index: int, event: NewEvent) -> None:
        self._slots.append(index)
        self.events.append(event)

    def settle(self, appended: Sequence[Appended]) -> list[Outcome]:
        """One outcome per item, in order, given the store's answers for ``events``."""
        for index, answer in zip(self._slots, appended, strict=True):
            self._outcomes[index] = Outcome.of(answer)
        return [outcome for outcome in self._outcomes if outcome is not None]


def decide(
    items: Sequence[object], *, clock: Clock, rules: TimeRules, metadata: dict[str, Any]
) -> Decided:
    """Validate every item and decide its event; nothing is stored yet."""
    now = clock()
    decided = Decided(len(items))
    for index, item in enumerate(items):
        try:
            command = reading_command(item)
            event: Reading
            if isinstance(command, RecordMeterReading):
                event = record_meter_reading(command, now=now, rules=rules)
            else:
                event = record_vehicle_reading(command, now=now, rules=rules)
        except Invalid as exc:
            decided.reject(index, exc.errors)
            continue
        except Rejected as exc:
            decided.reject(index, wire_errors(exc.errors))
            continue
        decided.accept(index, reading_record(event, metadata=metadata, received_at=now))
    return decided


def ingest(
    items: Sequence[object],
    *,
    store: Appender,
    clock: Clock,
    rules: TimeRules,
    metadata: dict[str, Any],
) -> list[Outcome]:
    """One outcome per item, in order. Valid items are stored even when others are rejected.

    All valid items of one call are appended in one transaction, so the answer is given only
    once every one of them is durable.
    """
    decided = decide(items, clock=clock, rules=rules, metadata=metadata)
    return decided.settle(store.append(decided.events) if decided.events else [])
