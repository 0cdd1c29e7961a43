"""``GET /v1/events`` and ``GET /v1/projections`` over HTTP, on a database of their own."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import orjson
import psycopg
from falcon import testing

from eventstore import Selection
from eventstore.store import iter_events
from queries.projection_status import PROJECTOR_APPLICATION
from tests.e2e.conftest import NOW, post
from tests.projection_runs import project_through

READINGS = [
    {"meterId": "M1", "kwhConsumedAc": 1.5, "voltage": 230.0, "timestamp": 1780300000},
    {"meterId": "M2", "kwhConsumedAc": 2.5, "voltage": 231.0, "timestamp": 1780300000},
    {
        "vehicleId": "V1",
        "soc": 50,
        "kwhDeliveredDc": 1.2,
        "batteryTemp": 30,
        "timestamp": 1780300000,
    },
    {"meterId": "M1", "kwhConsumedAc": 1.0, "voltage": 229.0, "timestamp": 1780300060},
]


def lines(client: testing.TestClient, **params: Any) -> list[dict[str, Any]]:
    answer = client.simulate_get("/v1/events", params={k: str(v) for k, v in params.items()})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/x-ndjson"
    return [orjson.loads(line) for line in answer.content.splitlines()]


def write(client: testing.TestClient) -> list[dict[str, Any]]:
    """Post the readings one by one and a mapping; the write answers, in order.

    Returns once the log serves all of them: the commit-safe fence is cluster-wide, and any
    transaction open on the server (another test's) holds newer events back a moment.
    """
    answers = [post(client, "/v1/ingest", body) for body in READINGS]
    answers.append(post(client, "/v1/mappings", {"vehicleId": "V1", "meterId": "M1"}))
    wanted, deadline = {a["position"] for a in answers}, time.monotonic() + 60
    while not wanted <= {e["position"] for e in lines(client)}:
        assert time.monotonic() < deadline, "the written events never came through the fence"
        time.sleep(0.05)
    return answers


def test_the_log_is_served_in_commit_order_with_every_field_as_stored(
    fresh_client: testing.TestClient,
) -> None:
    answers = write(fresh_client)
    log = lines(fresh_client)
    assert [e["eventId"] for e in log] == [a["eventId"] for a in answers]
    assert [e["position"] for e in log] == [a["position"] for a in answers]
    assert [(e["transactionId"], e["position"]) for e in log] == sorted(
        (e["transactionId"], e["position"]) for e in log
    )
    first = log[0]
    assert first == {
        "position": answers[0]["position"],
        "transactionId": first["transactionId"],
        "eventId": answers[0]["eventId"],
        "streamId": "meter-M1",
        "type": "MeterReadingRecorded",
        "schemaVersion": 1,
        "receivedAt": NOW.isoformat(),
        "payload": {
            "meterId": "M1",
            "kwhConsumedAc": 1.5,
            "voltage": 230.0,
            "timestamp": "2026-06-01T07:46:40+00:00",
        },
        "metadata": {"requestId": first["metadata"]["requestId"], "credentialId": "-"},
    }
    assert log[2]["type"] == "VehicleReadingRecorded" and log[2]["schemaVersion"] == 2
    assert log[4]["streamId"] == "vehicle-V1-mappings"
    assert log[4]["payload"] == {
        "vehicleId": "V1",
        "meterId": "M1",
        "effectiveFrom": NOW.isoformat(),
    }


def test_the_log_filters_by_stream_device_type_time_and_resumes_after_a_place(
    fresh_client: testing.TestClient,
) -> None:
    answers = write(fresh_client)
    position = [a["position"] for a in answers]
    assert [e["position"] for e in lines(fresh_client, stream="meter-M1")] == [
        position[0],
        position[3],
    ]
    assert [e["position"] for e in lines(fresh_client, stream="meter-M2,vehicle-V1")] == [
        position[1],
        position[2],
    ]
    assert [e["position"] for e in lines(fresh_client, device="V1")] == [position[2], position[4]]
    assert [e["type"] for e in lines(fresh_client, type="VehicleMeterMapped")] == [
        "VehicleMeterMapped"
    ]
    assert len(lines(fresh_client, **{"from": NOW.isoformat()})) == 5
    assert lines(fresh_client, to=NOW.isoformat()) == []
    assert len(lines(fresh_client, to=(NOW + timedelta(seconds=1)).isoformat())) == 5

    log = lines(fresh_client)
    after = f"{log[1]['transactionId']}:{log[1]['position']}"
    assert [e["position"] for e in lines(fresh_client, after=after)] == position[2:]
    assert [e["position"] for e in lines(fresh_client, after=after, limit=2)] == position[2:4]


def test_the_log_streams_in_chunks_without_losing_or_repeating_an_event(
    fresh_client: testing.TestClient, fresh_database_url: str
) -> None:
    answers = write(fresh_client) + write(fresh_client)  # the second round: all duplicates
    stored = {a["position"] for a in answers}
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        streamed = [e.position for e in iter_events(conn, Selection(), fetch=2)]
    assert streamed == sorted(stored) and len(streamed) == 5


def test_projection_status_shows_caught_up_then_behind_then_who_holds_the_fence(
    fresh_client: testing.TestClient, fresh_database_url: str
) -> None:
    answers = write(fresh_client)
    with psycopg.connect(fresh_database_url, autocommit=True) as conn:
        project_through(conn, answers[-1]["position"])

    def status() -> dict[str, dict[str, Any]]:
        answer = fresh_client.simulate_get("/v1/projections")
        assert answer.status_code == 200, answer.text
        assert answer.json["projectorSessions"] == 0
        return {p["name"]: p for p in answer.json["projections"]}

    now = status()
    assert now["ledger"]["state"] == "stalled" and now["ledger"]["updatedAt"] is None
    assert "no projector is attached" in now["ledger"]["reason"]
    for name in ("meter_live", "vehicle_live", "meter_history", "meter_hourly"):
        assert now[name]["state"] == "caught up" and now[name]["behind"] == 0, now[name]
        assert now[name]["checkpoint"]["position"] == answers[-1]["position"]

    with (
        psycopg.connect(fresh_database_url) as holder,
        psycopg.connect(fresh_database_url, application_name=PROJECTOR_APPLICATION),
    ):
        holder.execute("SELECT pg_current_xact_id()")  # an open transaction, with an id
        post(fresh_client, "/v1/ingest", {**READINGS[0], "timestamp": 1780300120})
        answer = fresh_client.simulate_get("/v1/projections").json
        behind = {p["name"]: p for p in answer["projections"]}["meter_live"]
        assert answer["projectorSessions"] == 1
        assert behind["behind"] == 1 and behind["secondsBehind"] >= 0
        assert behind["state"] == "running"  # a projector is attached, progress is recent
        # The oldest open transaction on the server: this one, or another test's.
        assert re.search(r"commit-safe fence, held by .*: pid \d+ ", behind["reason"])
