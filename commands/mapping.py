"""Map a vehicle to the meter that feeds it, from a moment on."""

from __future__ import annotations

from typing import Any

from commands.ingest import CODEC
from commands.outcomes import Appender, Clock, Outcome
from commands.payloads import Invalid, structure, wire_errors
from domain.mappings import (
    MapVehicleToMeter,
    VehicleMeterMapped,
    map_vehicle_to_meter,
    mapping_event_id,
    mapping_stream,
)
from domain.rules import Rejected, TimeRules


def create_mapping(
    body: object,
    *,
    store: Appender,
    clock: Clock,
    rules: TimeRules,
    metadata: dict[str, Any],
) -> tuple[Outcome, VehicleMeterMapped | None]:
    """Store the mapping ``body`` describes; the outcome and, unless rejected, the event."""
    now = clock()
    try:
        command = structure(body, MapVehicleToMeter)
        event = map_vehicle_to_meter(command, now=now, rules=rules)
    except Invalid as exc:
        return Outcome.rejected(exc.errors), None
    except Rejected as exc:
        return Outcome.rejected(wire_errors(exc.errors)), None
    stored = CODEC.encode(
        event,
        event_id=mapping_event_id(event),
        stream_id=mapping_stream(event),
        metadata=metadata,
        received_at=now,
    )
    [appended] = store.append([stored])
    return Outcome.of(appended), event
