"""The catalogue of event types: stored name and current schema version of each domain
event, and the upcasters that bring payloads stored under older versions up to date."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domain.credentials import TokenIssued, TokenRevoked
from domain.mappings import VehicleMeterMapped
from domain.readings import MeterReadingRecorded, VehicleReadingRecorded

EVENT_TYPES: dict[type, tuple[str, int]] = {
    MeterReadingRecorded: ("MeterReadingRecorded", 1),
    VehicleReadingRecorded: ("VehicleReadingRecorded", 2),
    VehicleMeterMapped: ("VehicleMeterMapped", 1),
    TokenIssued: ("TokenIssued", 1),
    TokenRevoked: ("TokenRevoked", 1),
}


def _vehicle_reading_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """Version 2 added the optional ``chargerId``; a version 1 reading had none."""
    return {**payload, "chargerId": None}


# (event type, stored version) -> a function to the next version. Payloads are never
# rewritten in the log: they are upcast when read.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("VehicleReadingRecorded", 1): _vehicle_reading_v1_to_v2,
}


def device_streams(device_id: str) -> tuple[str, ...]:
    """The streams one device writes: its readings as a meter or a vehicle, and the mappings
    made for it as a vehicle (see ``readings.reading_stream``, ``mappings.mapping_stream``)."""
    return (f"meter-{device_id}", f"vehicle-{device_id}", f"vehicle-{device_id}-mappings")
