"""Hypothesis strategies for domain values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from domain.mappings import VehicleMeterMapped
from domain.readings import MeterReadingRecorded, VehicleReadingRecorded

device_ids = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-",
    min_size=1,
    max_size=64,
)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)
energies = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)

meter_readings = st.builds(
    MeterReadingRecorded,
    meter_id=device_ids,
    kwh_consumed_ac=energies,
    voltage=st.floats(min_value=1e-3, max_value=1e5),
    timestamp=moments,
)
vehicle_readings = st.builds(
    VehicleReadingRecorded,
    vehicle_id=device_ids,
    soc=st.floats(min_value=0, max_value=100),
    kwh_delivered_dc=energies,
    battery_temp=st.floats(min_value=-60, max_value=100),
    timestamp=moments,
    charger_id=st.none() | device_ids,
)
mappings = st.builds(
    VehicleMeterMapped, vehicle_id=device_ids, meter_id=device_ids, effective_from=moments
)
events = st.one_of(meter_readings, vehicle_readings, mappings)


def small_mappings(vehicles: int = 3, meters: int = 3) -> st.SearchStrategy[VehicleMeterMapped]:
    """Mappings among a few devices over a few hours, so that they collide often."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    return st.builds(
        VehicleMeterMapped,
        vehicle_id=st.sampled_from([f"V{i}" for i in range(vehicles)]),
        meter_id=st.sampled_from([f"M{i}" for i in range(meters)]),
        effective_from=st.integers(min_value=0, max_value=12).map(
            lambda h: base + timedelta(hours=h)
        ),
    )
