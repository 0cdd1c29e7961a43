"""Ingest readings: validate each item, decide its event, append all valid ones together."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from commands.outcomes import Appender, Clock, Outcome
from commands.payloads import Invalid, reading_command, wire_errors
from domain.events import EVENT_TYPES, UPCASTERS
from domain.readings import (
    Reading,
    RecordMeterReading,
    reading_event_id,
    reading_stream,
    record_meter_reading,
    record_vehicle_reading,
)
from domain.rules import Rejected, TimeRules
from eventstore import Codec, NewEvent

CODEC = Codec(EVENT_TYPES, UPCASTERS)


def reading_record(event: Reading, *, metadata: dict[str, Any], received_at: datetime) -> NewEvent:
    """A reading as the log stores it: its id derived from its content (a repeat is a
    duplicate), its stream its device's."""
    return CODEC.encode(
        event,
        event_id=reading_event_id(event),
        stream_id=reading_stream(event),
        metadata=metadata,
        received_at=received_at,
    )


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
    now = clock()
    outcomes: list[Outcome | None] = [None] * len(items)
    events: list[NewEvent] = []
    slots: list[int] = []
    for index, item in enumerate(items):
        try:
            command = reading_command(item)
            if isinstance(command, RecordMeterReading):
                event = record_meter_reading(command, now=now, rules=rules)
            else:
                event = record_vehicle_reading(command, now=now, rules=rules)
        except Invalid as exc:
            outcomes[index] = Outcome.rejected(exc.errors)
            continue
        except Rejected as exc:
            outcomes[index] = Outcome.rejected(wire_errors(exc.errors))
            continue
        events.append(reading_record(event, metadata=metadata, received_at=now))
        slots.append(index)
    if events:
        for index, appended in zip(slots, store.append(events), strict=True):
            outcomes[index] = Outcome.of(appended)
    return [outcome for outcome in outcomes if outcome is not None]
