"""The read API over HTTP (Falcon's test client) on the real database.

Readings go in through ``POST /v1/ingest`` and ``POST /v1/mappings``, the projections catch
up, and every field of every answer is compared with values this test computes itself
from what it posted: sums, means and counts in plain Python, never the read side's SQL.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import psycopg
import pytest
from falcon import testing
from psycopg_pool import ConnectionPool

from projections.fleet_efficiency import FleetEfficiencyRefresh
from tests.e2e.conftest import NOW, make_client, post
from tests.ids import fresh_id
from tests.projection_runs import project_through
from web.context import ReadSettings

DAY = timedelta(hours=24)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def meter(meter_id: str, at: datetime, kwh: float, voltage: float = 230.0) -> dict[str, Any]:
    return {"meterId": meter_id, "kwhConsumedAc": kwh, "voltage": voltage, "timestamp": iso(at)}


def vehicle(
    vehicle_id: str, at: datetime, kwh: float, temp: float, soc: float = 50.0
) -> dict[str, Any]:
    return {
        "vehicleId": vehicle_id,
        "soc": soc,
        "kwhDeliveredDc": kwh,
        "batteryTemp": temp,
        "timestamp": iso(at),
    }


def write(client: testing.TestClient, readings: list[dict[str, Any]]) -> int:
    """Post ``readings`` in batches the test limits allow; the highest position stored."""
    last = 0
    for first in range(0, len(readings), 50):
        batch = readings[first : first + 50]
        answer = post(client, "/v1/ingest", batch)
        assert answer["accepted"] == len(batch), answer
        last = max(last, int(answer["position"]))
    return last


def mapping(client: testing.TestClient, vehicle_id: str, meter_id: str, since: datetime) -> int:
    body = {"vehicleId": vehicle_id, "meterId": meter_id, "effectiveFrom": iso(since)}
    return int(post(client, "/v1/mappings", body)["position"])


def project(url: str, position: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        project_through(conn, position)


def get(client: testing.TestClient, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
    answer = client.simulate_get(path, params={k: str(v) for k, v in params.items()})
    return answer.status_code, answer.json


class History:
    """What this test posted, to compute expected answers from."""

    def __init__(self) -> None:
        self.meters: list[dict[str, Any]] = []
        self.vehicles: list[dict[str, Any]] = []

    def add(self, readings: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for r in readings:
            (self.meters if "meterId" in r else self.vehicles).append(r)
        return readings

    def of_vehicle(self, vehicle_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        return [
            r
            for r in self.vehicles
            if r["vehicleId"] == vehicle_id
            and start < datetime.fromisoformat(r["timestamp"]) <= end
        ]

    def of_meter(self, meter_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        return [
            r
            for r in self.meters
            if r["meterId"] == meter_id and start < datetime.fromisoformat(r["timestamp"]) <= end
        ]


def expected_performance(
    history: History, vehicle_id: str, meter_ids: list[str], start: datetime, end: datetime
) -> dict[str, Any]:
    """The efficiency answer computed by hand: every meter counts for the whole window."""
    dc = history.of_vehicle(vehicle_id, start, end)
    ac = [r for m in meter_ids for r in history.of_meter(m, start, end)]
    dc_kwh = sum(r["kwhDeliveredDc"] for r in dc)
    ac_kwh = sum(r["kwhConsumedAc"] for r in ac) if meter_ids else None
    efficiency = dc_kwh / ac_kwh if ac_kwh else None
    return {
        "vehicleId": vehicle_id,
        "meterIds": sorted(meter_ids),
        "window": {"start": iso(start), "end": iso(end)},
        "dcKwh": pytest.approx(dc_kwh, rel=1e-12),
        "acKwh": None if ac_kwh is None else pytest.approx(ac_kwh, rel=1e-12),
        "efficiency": None if efficiency is None else pytest.approx(efficiency, rel=1e-12),
        "avgBatteryTemp": pytest.approx(sum(r["batteryTemp"] for r in dc) / len(dc), rel=1e-12)
        if dc
        else None,
        "vehicleReadings": len(dc),
        "meterReadings": len(ac),
        "flags": {
            "efficiencyAboveOne": efficiency is not None and efficiency > 1,
            "efficiencyBelowThreshold": efficiency is not None and efficiency < 0.75,
            "lowThreshold": 0.75,
        },
    }


@pytest.fixture
def charged(client: testing.TestClient, database_url: str) -> tuple[str, str, History]:
    """A vehicle and its meter with readings in, at the edges of, and outside the window."""
    v, m = fresh_id("V"), fresh_id("M")
    history = History()
    mapping(client, v, m, NOW - timedelta(hours=30))
    # Minutes before NOW: exactly at the window's start (excluded), just inside it, within
    # whole hours, at its end (included) and before it.
    offsets = [24 * 60, 24 * 60 - 1, 23 * 60 + 30, 600, 601, 90, 59, 1, 0, 26 * 60]
    readings = []
    for n, minutes in enumerate(offsets):
        at = NOW - timedelta(minutes=minutes)
        readings.append(meter(m, at, kwh=round(1.0 + n * 0.37, 3)))
        readings.append(vehicle(v, at, kwh=round(0.9 + n * 0.31, 3), temp=20.0 + n))
    project(database_url, write(client, history.add(readings)))
    return v, m, history


def test_performance_answers_the_last_24_hours_exactly_at_its_edges(
    client: testing.TestClient, charged: tuple[str, str, History]
) -> None:
    v, m, history = charged
    status, body = get(client, f"/v1/analytics/performance/{v}")
    assert status == 200
    assert body == expected_performance(history, v, [m], NOW - DAY, NOW)
    assert body["vehicleReadings"] == 8  # the two readings at and before the start are out


@pytest.mark.parametrize(
    ("params", "start", "end"),
    [
        (
            {"to": iso(NOW - timedelta(hours=1)), "window": "PT2H"},
            timedelta(hours=3),
            timedelta(hours=1),
        ),
        (
            {"from": iso(NOW - timedelta(hours=10, minutes=1))},
            timedelta(hours=10, minutes=1),
            timedelta(0),
        ),
        (
            {
                "from": int((NOW - timedelta(hours=25)).timestamp()),
                "to": int((NOW - timedelta(minutes=59)).timestamp()),
            },
            timedelta(hours=25),
            timedelta(minutes=59),
        ),
        ({"window": "P1DT2H"}, timedelta(hours=26), timedelta(0)),
    ],
)
def test_performance_over_another_window_counts_what_that_window_holds(
    client: testing.TestClient,
    charged: tuple[str, str, History],
    params: dict[str, Any],
    start: timedelta,
    end: timedelta,
) -> None:
    v, m, history = charged
    status, body = get(client, f"/v1/analytics/performance/{v}", **params)
    assert status == 200
    assert body == expected_performance(history, v, [m], NOW - start, NOW - end)


def test_performance_flags_an_impossible_and_a_poor_efficiency(
    client: testing.TestClient, database_url: str
) -> None:
    history = History()
    pairs = {
        "high": (fresh_id("V"), fresh_id("M"), 1.2),
        "low": (fresh_id("V"), fresh_id("M"), 0.5),
    }
    last = 0
    for v, m, ratio in pairs.values():
        mapping(client, v, m, NOW - DAY)
        at = NOW - timedelta(minutes=5)
        last = write(
            client, history.add([meter(m, at, kwh=10.0), vehicle(v, at, 10.0 * ratio, 25)])
        )
    project(database_url, last)

    for name, (v, m, _) in pairs.items():
        status, body = get(client, f"/v1/analytics/performance/{v}")
        assert status == 200
        assert body == expected_performance(history, v, [m], NOW - DAY, NOW)
        assert body["flags"]["efficiencyAboveOne"] is (name == "high")
        assert body["flags"]["efficiencyBelowThreshold"] is (name == "low")


def test_a_vehicle_without_a_meter_or_without_readings_answers_nulls_and_unknown_is_404(
    client: testing.TestClient, database_url: str
) -> None:
    lonely, idle, idle_meter = fresh_id("V"), fresh_id("V"), fresh_id("M")
    history = History()
    write(client, history.add([vehicle(lonely, NOW - timedelta(hours=2), 3.0, 30.0)]))
    project(database_url, mapping(client, idle, idle_meter, NOW - timedelta(hours=5)))

    status, body = get(client, f"/v1/analytics/performance/{lonely}")
    assert status == 200
    assert body == expected_performance(history, lonely, [], NOW - DAY, NOW)
    assert body["acKwh"] is None and body["efficiency"] is None and body["meterIds"] == []

    status, body = get(client, f"/v1/analytics/performance/{idle}")
    assert status == 200
    assert body == {
        **expected_performance(history, idle, [idle_meter], NOW - DAY, NOW),
        "acKwh": 0.0,  # mapped, but its meter drew nothing
    }
    assert body["dcKwh"] == 0 and body["avgBatteryTemp"] is None and body["efficiency"] is None

    status, body = get(client, f"/v1/analytics/performance/{fresh_id('V')}")
    assert status == 404
    assert body["type"] == "/problems/not-found" and body["status"] == 404


def test_live_state_shows_the_newest_reading_and_the_current_mapping(
    client: testing.TestClient, database_url: str
) -> None:
    v, m1, m2 = fresh_id("V"), fresh_id("M"), fresh_id("M")
    newest = NOW - timedelta(minutes=3)
    mapping(client, v, m1, NOW - timedelta(hours=10))
    remapped_at = NOW - timedelta(hours=1)
    mapping(client, v, m2, remapped_at)
    plugged = {**vehicle(v, newest, 2.5, 31.5, soc=64.0), "chargerId": "EVSE-7"}
    write(client, [plugged, meter(m2, newest, 2.75, 231.5)])
    last = write(client, [vehicle(v, NOW - timedelta(hours=3), 9.9, 10.0)])  # late: no effect
    project(database_url, last)

    status, body = get(client, f"/v1/vehicles/{v}")
    assert status == 200
    reading = body.pop("lastReading")
    assert body == {
        "vehicleId": v,
        "meterId": m2,
        "mappedSince": iso(remapped_at),
        "ageSeconds": 180.0,
        "recentEfficiency": None,  # no fleet refresh has run for it yet
    }
    fields = ("soc", "kwhDeliveredDc", "batteryTemp", "chargerId", "recordedAt")
    assert {k: reading[k] for k in fields} == {
        "soc": 64.0,
        "kwhDeliveredDc": 2.5,
        "batteryTemp": 31.5,
        "chargerId": "EVSE-7",
        "recordedAt": iso(newest),
    }
    assert reading["receivedAt"] == iso(NOW) and reading["position"] < last

    status, body = get(client, f"/v1/meters/{m2}")
    assert status == 200
    reading = body.pop("lastReading")
    assert body == {
        "meterId": m2,
        "vehicleId": v,
        "mappedSince": iso(remapped_at),
        "ageSeconds": 180.0,
    }
    assert (reading["kwhConsumedAc"], reading["voltage"], reading["recordedAt"]) == (
        2.75,
        231.5,
        iso(newest),
    )
    status, body = get(client, f"/v1/meters/{m1}")
    assert (status, body["vehicleId"], body["lastReading"]) == (200, None, None)  # mapped before
    assert get(client, f"/v1/meters/{fresh_id('M')}")[0] == 404
    assert get(client, f"/v1/vehicles/{fresh_id('V')}")[0] == 404


def test_history_pages_newest_first_within_the_range(
    client: testing.TestClient, database_url: str
) -> None:
    v, m = fresh_id("V"), fresh_id("M")
    moments = [NOW - timedelta(minutes=7 * n) for n in range(40)]
    readings = [vehicle(v, at, kwh=n / 10, temp=20 + n / 4) for n, at in enumerate(moments)]
    readings += [meter(m, at, kwh=n / 8) for n, at in enumerate(moments)]
    project(database_url, write(client, readings))

    start, end = NOW - timedelta(hours=4), NOW - timedelta(minutes=14)
    wanted = sorted((at for at in moments if start < at <= end), reverse=True)
    for path, key in (
        (f"/v1/vehicles/{v}/readings", "kwhDeliveredDc"),
        (f"/v1/meters/{m}/readings", "kwhConsumedAc"),
    ):
        seen: list[dict[str, Any]] = []
        params: dict[str, Any] = {"from": iso(start), "to": iso(end), "limit": 7}
        pages = 0
        while True:
            status, body = get(client, path, **params)
            assert status == 200
            assert len(body["items"]) <= 7
            seen += body["items"]
            pages += 1
            if body["nextCursor"] is None:
                break
            params["cursor"] = body["nextCursor"]
        assert [item["recordedAt"] for item in seen] == [iso(at) for at in wanted]
        assert pages == -(-len(wanted) // 7)
        divisor = 10 if key == "kwhDeliveredDc" else 8
        assert [item[key] for item in seen] == [moments.index(at) / divisor for at in wanted]

    status, body = get(client, f"/v1/vehicles/{v}/readings")  # default: the last 24 hours
    assert status == 200 and len(body["items"]) == 40 and body["nextCursor"] is None
    assert body["items"][0] == {
        "soc": 50.0,
        "kwhDeliveredDc": 0.0,
        "batteryTemp": 20.0,
        "chargerId": None,
        "recordedAt": iso(NOW),
        "receivedAt": iso(NOW),
        "position": body["items"][0]["position"],
    }
    assert get(client, f"/v1/vehicles/{fresh_id('V')}/readings")[0] == 404


def test_lists_page_by_id_and_filter_on_staleness_and_efficiency(
    fresh_client: testing.TestClient, fresh_database_url: str
) -> None:
    client, history = fresh_client, History()
    # Vehicle i charges from meter i at efficiency 0.6 + 0.05 i; vehicle i last reported
    # 10 i minutes ago. Vehicle 7 has no meter.
    readings, last = [], 0
    for i in range(8):
        at = NOW - timedelta(minutes=10 * i)
        readings.append(vehicle(f"V{i}", at, kwh=(0.6 + 0.05 * i) * 4, temp=20 + i))
        if i < 7:
            readings.append(meter(f"M{i}", at, kwh=4.0))
            last = mapping(client, f"V{i}", f"M{i}", NOW - DAY)
    last = max(last, write(client, history.add(readings)))
    project(fresh_database_url, last)
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        FleetEfficiencyRefresh().run(conn, end=NOW)

    def collect(path: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            status, body = get(client, path, **params)
            assert status == 200, body
            items += body["items"]
            if body["nextCursor"] is None:
                return items
            params["cursor"] = body["nextCursor"]

    vehicles = collect("/v1/vehicles", limit=3)
    assert [v["vehicleId"] for v in vehicles] == [f"V{i}" for i in range(8)]
    for i, item in enumerate(vehicles):
        assert item["meterId"] == (f"M{i}" if i < 7 else None)
        assert item["ageSeconds"] == 600.0 * i
        recent = item["recentEfficiency"]
        assert recent["asOf"] == iso(NOW)
        assert recent["dcKwh"] == pytest.approx((0.6 + 0.05 * i) * 4)
        if i < 7:
            assert recent["efficiency"] == pytest.approx(0.6 + 0.05 * i)
            assert recent["acKwh"] == 4.0
        else:
            assert recent["efficiency"] is None and recent["acKwh"] is None
    stale = collect("/v1/vehicles", staleMinutes=35, limit=2)
    assert [v["vehicleId"] for v in stale] == [f"V{i}" for i in range(8) if 10 * i > 35]
    poor = collect("/v1/vehicles", efficiencyBelow=0.75)
    assert [v["vehicleId"] for v in poor] == [f"V{i}" for i in range(7) if 0.6 + 0.05 * i < 0.75]
    meters = collect("/v1/meters", limit=4)
    assert [(m["meterId"], m["vehicleId"]) for m in meters] == [
        (f"M{i}", f"V{i}") for i in range(7)
    ]
    assert [m["meterId"] for m in collect("/v1/meters", staleMinutes=45)] == ["M5", "M6"]

    status, summary = get(client, "/v1/fleet/summary", staleMinutes=25, lowest=3)
    assert status == 200
    dc_charged = sum((0.6 + 0.05 * i) * 4 for i in range(7))
    assert summary == {
        "meters": {"total": 7, "live": 3, "stale": 4},
        "vehicles": {"total": 8, "live": 3, "stale": 5},
        "window": {"start": iso(NOW - DAY), "end": iso(NOW), "computedAt": iso(NOW)},
        "dcKwh": pytest.approx(dc_charged + (0.6 + 0.05 * 7) * 4),
        "acKwh": pytest.approx(4.0 * 7),
        "efficiency": pytest.approx(dc_charged / (4.0 * 7)),
        "lowestEfficiency": [
            {
                "vehicleId": f"V{i}",
                "efficiency": pytest.approx(0.6 + 0.05 * i),
                "dcKwh": pytest.approx((0.6 + 0.05 * i) * 4),
                "acKwh": 4.0,
                "meterIds": [f"M{i}"],
            }
            for i in range(3)
        ],
        "staleAfterMinutes": 25.0,
    }


def test_the_fleet_summary_before_any_refresh_has_no_window(
    fresh_client: testing.TestClient,
) -> None:
    status, body = get(fresh_client, "/v1/fleet/summary")
    assert status == 200
    assert body["window"] is None and body["efficiency"] is None and body["lowestEfficiency"] == []
    assert body["staleAfterMinutes"] == 15.0


def test_a_read_given_its_writes_position_waits_for_the_projections_then_sees_the_write(
    pool: ConnectionPool[Any], database_url: str
) -> None:
    client = make_client(pool, ReadSettings(max_wait=20.0))  # returns once it is reached
    v = fresh_id("V")
    position = write(client, [vehicle(v, NOW - timedelta(minutes=1), 1.0, 22.0)])
    catching_up = threading.Timer(0.1, project, args=(database_url, position))
    catching_up.start()
    try:
        status, body = get(client, f"/v1/vehicles/{v}", minPosition=position)
    finally:
        catching_up.join()
    assert status == 200, body
    assert body["lastReading"]["position"] == position
    assert body["consistency"]["reached"] is True
    assert body["consistency"]["minPosition"] == position and body["consistency"]["lagging"] == []


def test_a_read_waiting_for_its_position_keeps_no_connection_from_the_other_reads(
    fresh_pool: ConnectionPool[Any], fresh_database_url: str
) -> None:
    answers: dict[str, Any] = {}
    with ConnectionPool(fresh_database_url, min_size=1, max_size=1) as one_connection:
        client = make_client(fresh_pool, ReadSettings(max_wait=10.0), reads=one_connection)
        v = fresh_id("V")
        position = write(client, [vehicle(v, NOW - timedelta(minutes=1), 1.0, 22.0)])

        async def read(conductor: testing.ASGIConductor, name: str, path: str) -> None:
            answers[name] = await conductor.simulate_get(path)

        async def a_waiting_read_and_a_plain_one() -> None:
            async with testing.ASGIConductor(client.app) as conductor:
                waiting = asyncio.create_task(
                    read(conductor, "waiting", f"/v1/vehicles/{v}?minPosition={position}")
                )
                await asyncio.sleep(0.3)  # it is waiting now: nothing projects the write
                await read(conductor, "plain", "/v1/fleet/summary")
                assert not waiting.done()  # answered while the other still waits
                await asyncio.to_thread(project, fresh_database_url, position)
                await waiting

        asyncio.run(a_waiting_read_and_a_plain_one())
    assert answers["plain"].status_code == 200
    assert answers["waiting"].status_code == 200
    assert answers["waiting"].json["consistency"]["reached"] is True


def test_a_read_whose_position_is_not_reached_in_time_says_how_far_behind_it_is(
    fresh_client: testing.TestClient, fresh_database_url: str
) -> None:
    v = fresh_id("V")
    first = write(fresh_client, [vehicle(v, NOW - timedelta(minutes=9), 1.0, 22.0)])
    project(fresh_database_url, first)
    second = write(fresh_client, [vehicle(v, NOW - timedelta(minutes=8), 1.0, 22.0)])
    began = time.monotonic()
    answer = fresh_client.simulate_get(
        f"/v1/analytics/performance/{v}", headers={"X-Min-Position": str(second)}
    )
    assert time.monotonic() - began >= 0.3  # it waited the configured bound
    assert answer.status_code == 200
    consistency = answer.json["consistency"]
    assert consistency["reached"] is False and consistency["minPosition"] == second
    lagging = {lag["projection"]: lag for lag in consistency["lagging"]}
    assert set(lagging) == {
        "meter_hourly",
        "vehicle_hourly",
        "meter_history",
        "vehicle_history",
        "vehicle_live",
        "vehicle_meter_map",
    }
    assert all(
        lag["eventsBehind"] == 1 and lag["checkpointPosition"] == first for lag in lagging.values()
    )
    assert answer.json["vehicleReadings"] == 1  # the answer as the projections stand


def cursor_of(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


BAD_QUERIES = [
    ("/v1/analytics/performance/V1", {"colour": "red"}, "colour"),
    ("/v1/analytics/performance/V1", {"from": iso(NOW), "to": iso(NOW - DAY)}, "from"),
    ("/v1/analytics/performance/V1", {"from": iso(NOW - timedelta(days=40))}, "from"),
    ("/v1/analytics/performance/V1", {"window": "P32D"}, "window"),
    ("/v1/analytics/performance/V1", {"window": "24h"}, "window"),
    ("/v1/analytics/performance/V1", {"window": "PT0S"}, "window"),
    ("/v1/analytics/performance/V1", {"window": "PT1H", "from": iso(NOW)}, "window"),
    ("/v1/analytics/performance/V1", {"to": "2026-06-01T12:00:00"}, "to"),
    ("/v1/analytics/performance/V1", {"to": "yesterday"}, "to"),
    ("/v1/analytics/performance/V1", {"to": "1e400"}, "to"),
    ("/v1/analytics/performance/V1", {"to": "0001-01-01T00:00:00Z"}, "to"),
    ("/v1/analytics/performance/V1", {"to": "99999999999999"}, "to"),
    ("/v1/analytics/performance/V1", {"minPosition": "0"}, "minPosition"),
    ("/v1/analytics/performance/V1", {"minPosition": "x"}, "minPosition"),
    ("/v1/analytics/performance/V%20bad", {}, "vehicleId"),
    ("/v1/analytics/performance/" + "V" * 65, {}, "vehicleId"),
    ("/v1/vehicles", {"cursor": "not-a-cursor"}, "cursor"),
    ("/v1/vehicles", {"cursor": cursor_of({"after": 3})}, "cursor"),
    ("/v1/vehicles", {"cursor": cursor_of([1])}, "cursor"),
    ("/v1/vehicles", {"limit": "0"}, "limit"),
    ("/v1/vehicles", {"limit": "1001"}, "limit"),
    ("/v1/vehicles", {"limit": "ten"}, "limit"),
    ("/v1/vehicles", {"staleMinutes": "-1"}, "staleMinutes"),
    ("/v1/vehicles", {"efficiencyBelow": "nan"}, "efficiencyBelow"),
    ("/v1/meters", {"efficiencyBelow": "0.5"}, "efficiencyBelow"),
    ("/v1/meters/M!x", {}, "meterId"),
    ("/v1/vehicles/V1/readings", {"window": "PT1H"}, "window"),
    ("/v1/vehicles/V1/readings", {"cursor": cursor_of({"before": "soon"})}, "cursor"),
    (
        "/v1/vehicles/V1/readings",
        {"cursor": cursor_of({"before": "2026-01-01T00:00:00"})},
        "cursor",
    ),
    ("/v1/meters/M1/readings", {"from": iso(NOW), "to": iso(NOW)}, "from"),
    ("/v1/fleet/summary", {"lowest": "101"}, "lowest"),
    ("/v1/fleet/summary", {"page": "2"}, "page"),
    ("/v1/events", {"stream": "meter-\x00"}, "stream"),
    ("/v1/events", {"after": "12"}, "after"),
    ("/v1/events", {"after": "1:99999999999999999999"}, "after"),
    ("/v1/events", {"device": "M 1"}, "device"),
    ("/v1/events", {"type": ","}, "type"),
    ("/v1/projections", {"name": "x"}, "name"),
]


@pytest.mark.parametrize(("path", "params", "field"), BAD_QUERIES)
def test_bad_query_input_gets_a_422_problem_naming_the_parameter(
    client: testing.TestClient, path: str, params: dict[str, str], field: str
) -> None:
    answer = client.simulate_get(path, params=params)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in answer.json["errors"]]


def test_a_repeated_parameter_and_a_bad_header_are_refused(client: testing.TestClient) -> None:
    answer = client.simulate_get("/v1/vehicles", query_string="limit=1&limit=2")
    assert answer.status_code == 422
    assert answer.json["errors"] == [{"field": "limit", "message": "may be given only once"}]
    answer = client.simulate_get("/v1/vehicles", headers={"X-Min-Position": "soon"})
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json["errors"]] == ["X-Min-Position"]


def test_an_offset_whose_plus_arrived_as_a_space_is_still_read(
    client: testing.TestClient, charged: tuple[str, str, History]
) -> None:
    v, m, history = charged
    local = (NOW - timedelta(hours=2)).astimezone(timezone(timedelta(hours=1)))
    answer = client.simulate_get(
        f"/v1/analytics/performance/{v}",
        query_string="to=" + local.isoformat().replace("+", "%20"),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json == expected_performance(
        history, v, [m], NOW - timedelta(hours=26), NOW - timedelta(hours=2)
    )


def test_a_read_when_the_database_is_down_is_a_503_not_a_500() -> None:
    broken = ConnectionPool(
        "host=127.0.0.1 port=1 connect_timeout=1", min_size=0, max_size=1, open=True, timeout=0.5
    )
    try:
        answer = make_client(broken).simulate_get("/v1/vehicles")
    finally:
        broken.close()
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
