"""The catalogue of event types: stored name and current schema version of each domain event."""

from __future__ import annotations

from domain.mappings import VehicleMeterMapped
from domain.readings import MeterReadingRecorded, VehicleReadingRecorded

EVENT_TYPES: dict[type, tuple[str, int]] = {
    MeterReadingRecorded: ("MeterReadingRecorded", 1),
    VehicleReadingRecorded: ("VehicleReadingRecorded", 1),
    VehicleMeterMapped: ("VehicleMeterMapped", 1),
}
