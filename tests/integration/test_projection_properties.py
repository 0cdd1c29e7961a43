"""For any sequence of readings and mappings, the read models equal a plain-Python oracle.

Each example writes through the real command handlers into the shared test database under
device ids of its own, catches the projections up, and compares rows and answers.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg_pool import ConnectionPool

from commands.ingest import ingest
from commands.mapping import create_mapping
from commands.outcomes import Status
from domain.efficiency import Window
from domain.mappings import MappingPeriod
from domain.readings import MeterReadingRecorded, VehicleReadingRecorded
from domain.rules import TimeRules
from eventstore import EventStore
from queries.efficiency import vehicle_efficiency
from tests.oracle import Expected, as_numeric, brute_efficiency
from tests.projection_runs import project_through

BASE = datetime(2026, 3, 31, 20, 0, tzinfo=UTC)  # windows cross a month (partition) boundary
NOW = BASE + timedelta(hours=12)
RULES = TimeRules()
SPAN_MINUTES = 8 * 60


# The rows of one example, which owns every device id starting with its prefix.
METER_LIVE = """
SELECT meter_id, kwh_consumed_ac, voltage, recorded_at
FROM meter_live WHERE meter_id LIKE %(prefix)s
"""
VEHICLE_LIVE = """
SELECT vehicle_id, kwh_delivered_dc, battery_temp, recorded_at
FROM vehicle_live WHERE vehicle_id LIKE %(prefix)s
"""
METER_HISTORY = """
SELECT meter_id, recorded_at, kwh_consumed_ac, voltage
FROM meter_history WHERE meter_id LIKE %(prefix)s ORDER BY 1, 2
"""
VEHICLE_HISTORY = """
SELECT vehicle_id, recorded_at, kwh_delivered_dc, battery_temp
FROM vehicle_history WHERE vehicle_id LIKE %(prefix)s ORDER BY 1, 2
"""
METER_HOURLY = """
SELECT meter_id, hour, kwh_consumed_ac, readings
FROM meter_hourly WHERE meter_id LIKE %(prefix)s
"""
VEHICLE_HOURLY = """
SELECT vehicle_id, hour, kwh_delivered_dc, battery_temp_sum, readings
FROM vehicle_hourly WHERE vehicle_id LIKE %(prefix)s
"""
MAPPING_PERIODS = """
SELECT vehicle_id, meter_id, valid_from, valid_to
FROM vehicle_meter_map WHERE vehicle_id LIKE %(prefix)s
"""


def minute(n: int) -> datetime:
    return BASE + timedelta(minutes=n)


energy = st.floats(min_value=0, max_value=50, allow_nan=False).map(lambda x: round(x, 3))
offsets = st.integers(min_value=0, max_value=SPAN_MINUTES)
seconds = st.sampled_from([0, 0, 0, 30, 59])

meter_op = st.tuples(
    st.just("meter"), st.integers(0, 2), offsets, seconds, energy, st.floats(200, 250)
)
vehicle_op = st.tuples(
    st.just("vehicle"), st.integers(0, 2), offsets, seconds, energy, st.floats(-10, 60)
)
map_op = st.tuples(st.just("map"), st.integers(0, 2), offsets, st.integers(0, 2))
repeat_op = st.tuples(st.just("repeat"), st.integers(0, 1000))
operations = st.lists(
    st.one_of(meter_op, vehicle_op, meter_op, vehicle_op, map_op, repeat_op), max_size=45
)
# A window's ends are whole minutes, or a microsecond either side of one: the first whole
# hour of a window starting 1 µs after an hour is the next one.
jitter = st.sampled_from([0, 0, 0, 1, -1])
windows = st.lists(
    st.tuples(st.integers(-30, SPAN_MINUTES), st.integers(1, 26 * 60), jitter, jitter),
    min_size=1,
    max_size=4,
)


def as_body(op: tuple[Any, ...], prefix: str) -> dict[str, Any]:
    kind = op[0]
    if kind == "meter":
        _, device, at, sec, kwh, voltage = op
        return {
            "meterId": f"{prefix}M{device}",
            "kwhConsumedAc": kwh,
            "voltage": voltage,
            "timestamp": (minute(at) + timedelta(seconds=sec)).isoformat(),
        }
    _, device, at, sec, kwh, temp = op
    return {
        "vehicleId": f"{prefix}V{device}",
        "soc": 50,
        "kwhDeliveredDc": kwh,
        "batteryTemp": temp,
        "timestamp": (minute(at) + timedelta(seconds=sec)).isoformat(),
    }


def write(store: EventStore, ops: list[tuple[Any, ...]], prefix: str) -> tuple[list[Any], int]:
    """Send every operation through the handlers; accepted events in log order, last position."""
    accepted: list[Any] = []
    sent: list[dict[str, Any]] = []
    last = 0
    clock = lambda: NOW  # noqa: E731
    for op in ops:
        if op[0] == "map":
            _, vehicle, at, meter = op
            body = {
                "vehicleId": f"{prefix}V{vehicle}",
                "meterId": f"{prefix}M{meter}",
                "effectiveFrom": minute(at).isoformat(),
            }
            outcome, event = create_mapping(
                body, store=store, clock=clock, rules=RULES, metadata={}
            )
            if outcome.status is Status.ACCEPTED:
                accepted.append(event)
            last = max(last, outcome.position or 0)
            continue
        if op[0] == "repeat":
            if not sent:
                continue
            body = sent[op[1] % len(sent)]
        else:
            body = as_body(op, prefix)
        [outcome] = ingest([body], store=store, clock=clock, rules=RULES, metadata={})
        last = max(last, outcome.position or 0)
        sent.append(body)
        if outcome.status is Status.ACCEPTED:
            accepted.append(reading_event(body))
    return accepted, last


def reading_event(body: dict[str, Any]) -> MeterReadingRecorded | VehicleReadingRecorded:
    moment = datetime.fromisoformat(body["timestamp"])
    if "meterId" in body:
        return MeterReadingRecorded(
            meter_id=body["meterId"],
            kwh_consumed_ac=float(body["kwhConsumedAc"]),
            voltage=float(body["voltage"]),
            timestamp=moment,
        )
    return VehicleReadingRecorded(
        vehicle_id=body["vehicleId"],
        soc=float(body["soc"]),
        kwh_delivered_dc=float(body["kwhDeliveredDc"]),
        battery_temp=float(body["batteryTemp"]),
        timestamp=moment,
    )


def period_order(period: MappingPeriod) -> tuple[str, str, datetime]:
    return (
        period.vehicle_id,
        period.meter_id,
        period.valid_from or datetime.min.replace(tzinfo=UTC),
    )


def assert_close(actual: float | None, expected: float | None, rel: float, abs: float) -> None:
    """Equal up to float summation order; ``None`` (no data) only where the oracle has none."""
    if expected is None:
        assert actual is None
    else:
        assert actual == pytest.approx(expected, rel=rel, abs=abs)


def rows(conn: psycopg.Connection[Any], query: str, prefix: str) -> list[tuple[Any, ...]]:
    return conn.execute(query, {"prefix": prefix + "%"}).fetchall()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations, asked=windows)
def test_read_models_and_efficiency_equal_the_oracle(
    pool: ConnectionPool[Any],
    database_url: str,
    ops: list[tuple[Any, ...]],
    asked: list[tuple[int, int]],
) -> None:
    prefix = f"p{uuid.uuid4().hex[:8]}"
    store = EventStore(pool)
    events, last = write(store, ops, prefix)
    expected = Expected.of(events)

    with psycopg.connect(database_url, autocommit=True) as conn:
        if last:
            project_through(conn, last)

        live = {r[0]: r[1:] for r in rows(conn, METER_LIVE, prefix)}
        assert live == {
            m: (r.kwh_consumed_ac, r.voltage, r.timestamp) for m, r in expected.meter_live().items()
        }
        vlive = {r[0]: r[1:] for r in rows(conn, VEHICLE_LIVE, prefix)}
        assert vlive == {
            v: (r.kwh_delivered_dc, r.battery_temp, r.timestamp)
            for v, r in expected.vehicle_live().items()
        }

        meter_history = rows(conn, METER_HISTORY, prefix)
        assert meter_history == sorted(
            (r.meter_id, r.timestamp, r.kwh_consumed_ac, r.voltage) for r in expected.meters
        )
        vehicle_history = rows(conn, VEHICLE_HISTORY, prefix)
        assert vehicle_history == sorted(
            (r.vehicle_id, r.timestamp, r.kwh_delivered_dc, r.battery_temp)
            for r in expected.vehicles
        )

        meter_hourly = {(r[0], r[1]): (r[2], r[3]) for r in rows(conn, METER_HOURLY, prefix)}
        assert meter_hourly == expected.meter_hourly()
        vehicle_hourly = {
            (r[0], r[1]): (r[2], r[3], r[4]) for r in rows(conn, VEHICLE_HOURLY, prefix)
        }
        assert vehicle_hourly == expected.vehicle_hourly()

        periods = [
            MappingPeriod(vehicle_id=r[0], meter_id=r[1], valid_from=r[2], valid_to=r[3])
            for r in rows(conn, MAPPING_PERIODS, prefix)
        ]
        assert sorted(periods, key=period_order) == sorted(expected.periods, key=period_order)

        # The efficiency answer against sums taken one by one over the history rows.
        history_meters = [
            MeterReadingRecorded(meter_id=m, timestamp=t, kwh_consumed_ac=k, voltage=v)
            for m, t, k, v in meter_history
        ]
        history_vehicles = [
            VehicleReadingRecorded(
                vehicle_id=v, timestamp=t, kwh_delivered_dc=k, battery_temp=b, soc=50
            )
            for v, t, k, b in vehicle_history
        ]
        for vehicle in sorted({f"{prefix}V{i}" for i in range(3)}):
            for start, length, early, late in asked:
                window = Window(
                    start=minute(start) + timedelta(microseconds=early),
                    end=minute(start + length) + timedelta(microseconds=late),
                )
                answer = vehicle_efficiency(conn, vehicle, window)
                known = any(v.vehicle_id == vehicle for v in history_vehicles) or any(
                    p.vehicle_id == vehicle for p in periods
                )
                if not known:
                    assert answer is None
                    continue
                assert answer is not None
                brute = brute_efficiency(vehicle, window, history_vehicles, history_meters, periods)
                assert answer.meter_ids == brute.meter_ids
                assert answer.vehicle_readings == brute.vehicle_readings
                assert answer.meter_readings == brute.meter_readings
                assert_close(answer.dc_kwh, brute.dc_kwh, rel=1e-12, abs=1e-9)
                assert_close(answer.ac_kwh, brute.ac_kwh, rel=1e-12, abs=1e-9)
                assert_close(answer.efficiency, brute.efficiency, rel=1e-9, abs=1e-12)
                assert_close(answer.avg_battery_temp, brute.avg_battery_temp, rel=1e-12, abs=1e-9)


def test_as_numeric_matches_the_database_cast(pool: ConnectionPool[Any]) -> None:
    values = [0.1, 1 / 3, 12.345678901234567, 1e-7, 49.999]
    with pool.connection() as conn:
        cast = [row[0] for row in conn.execute("SELECT unnest(%s::float8[])::numeric", [values])]
    assert cast == [as_numeric(v) for v in values]
