"""Map a vehicle to the meter that feeds it, from a moment on."""

from __future__ import annotations

from datetime import datetime
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
from eventstore import NewEvent


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
    [appended] = store.append([mapping_record(event, metadata=metadata, received_at=now)])
    return Outcome.of(appended), event


def mapping_record(
    event: VehicleMeterMapped, *, metadata: dict[str, Any], received_at: datetime
) -> NewEvent:
    """A mapping as the log stores it: its id derived from its content, its stream the
    vehicle's mappings."""
    return CODEC.encode(
        event,
        event_id=mapping_event_id(event),
        stream_id=mapping_stream(event),
        metadata=metadata,
        received_at=received_at,
    )
