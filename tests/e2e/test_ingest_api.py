"""``POST /v1/ingest`` and ``POST /v1/mappings`` through the ASGI app, on the real database."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from falcon import testing

from eventstore import EventStore
from tests.e2e.conftest import LIMITS, NOW
from tests.ids import fresh_id

EPOCH_NOW = int(NOW.timestamp())


def meter(meter_id: str, **change: Any) -> dict[str, Any]:
    return {
        "meterId": meter_id,
        "kwhConsumedAc": 15.5,
        "voltage": 230.2,
        "timestamp": EPOCH_NOW - 60,
        **change,
    }


def vehicle(vehicle_id: str, **change: Any) -> dict[str, Any]:
    return {
        "vehicleId": vehicle_id,
        "soc": 80,
        "kwhDeliveredDc": 12.3,
        "batteryTemp": 34.5,
        "timestamp": EPOCH_NOW - 60,
        **change,
    }


def post(
    client: testing.TestClient, body: object, content_type: str = "application/json"
) -> testing.Result:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.simulate_post("/v1/ingest", body=data, headers={"Content-Type": content_type})


def test_a_meter_reading_is_accepted_with_its_event_id_and_position(
    client: testing.TestClient, store: EventStore
) -> None:
    meter_id = fresh_id("M")
    answer = post(client, meter(meter_id))

    assert answer.status_code == 202
    assert answer.json["status"] == "accepted"
    [stored] = store.read_stream(f"meter-{meter_id}")
    assert answer.json["eventId"] == str(stored.event_id)
    assert answer.json["position"] == stored.position
    assert stored.payload["kwhConsumedAc"] == 15.5
    assert stored.metadata["requestId"] == answer.headers["x-request-id"]


def test_a_vehicle_reading_is_accepted(client: testing.TestClient, store: EventStore) -> None:
    vehicle_id = fresh_id("V")
    answer = post(client, vehicle(vehicle_id))
    assert answer.status_code == 202
    [stored] = store.read_stream(f"vehicle-{vehicle_id}")
    assert stored.event_type == "VehicleReadingRecorded"
    assert stored.payload["soc"] == 80.0


def test_the_same_reading_again_is_acknowledged_as_a_duplicate_and_not_stored_twice(
    client: testing.TestClient, store: EventStore
) -> None:
    meter_id = fresh_id("M")
    first = post(client, meter(meter_id))
    again = post(client, meter(meter_id))

    assert again.status_code == 202
    assert again.json == {**first.json, "status": "duplicate"}
    assert len(store.read_stream(f"meter-{meter_id}")) == 1


def test_the_same_moment_written_differently_is_still_the_same_reading(
    client: testing.TestClient, store: EventStore
) -> None:
    meter_id = fresh_id("M")
    post(client, meter(meter_id, timestamp=1780315200))
    again = post(client, meter(meter_id, timestamp="2026-06-01T14:00:00+02:00"))
    assert again.json["status"] == "duplicate"


def test_a_different_reading_for_a_stored_device_and_timestamp_is_a_conflict(
    client: testing.TestClient, store: EventStore
) -> None:
    meter_id = fresh_id("M")
    first = post(client, meter(meter_id))
    clash = post(client, meter(meter_id, kwhConsumedAc=99.0))

    assert clash.status_code == 409
    assert clash.headers["content-type"] == "application/problem+json"
    assert clash.json["eventId"] == first.json["eventId"]
    [stored] = store.read_stream(f"meter-{meter_id}")
    assert stored.payload["kwhConsumedAc"] == 15.5


def test_a_json_array_answers_per_item_and_stores_every_valid_one(
    client: testing.TestClient, store: EventStore
) -> None:
    meter_id, vehicle_id = fresh_id("M"), fresh_id("V")
    post(client, meter(meter_id, timestamp=EPOCH_NOW - 600))
    answer = post(
        client,
        [
            meter(meter_id),
            vehicle(vehicle_id, soc=120),
            vehicle(vehicle_id),
            meter(meter_id, timestamp=EPOCH_NOW - 600),
            meter(meter_id, timestamp=EPOCH_NOW - 600, voltage=1.0),
        ],
    )

    assert answer.status_code == 207
    body = answer.json
    assert [item["status"] for item in body["items"]] == [
        "accepted",
        "rejected",
        "accepted",
        "duplicate",
        "conflict",
    ]
    assert body["items"][1]["errors"] == [
        {"field": "soc", "message": "must be between 0 and 100 %"}
    ]
    assert (body["accepted"], body["rejected"], body["duplicates"], body["conflicts"]) == (
        2,
        1,
        1,
        1,
    )
    assert len(store.read_stream(f"meter-{meter_id}")) == 2
    assert len(store.read_stream(f"vehicle-{vehicle_id}")) == 1
    assert body["position"] == max(i["position"] for i in body["items"] if "position" in i)


def test_a_clean_batch_answers_202(client: testing.TestClient) -> None:
    meter_id = fresh_id("M")
    answer = post(client, [meter(meter_id, timestamp=EPOCH_NOW - n) for n in range(10)])
    assert answer.status_code == 202
    assert answer.json["accepted"] == 10


def test_ndjson_lines_are_readings_and_a_broken_line_is_rejected_alone(
    client: testing.TestClient, store: EventStore
) -> None:
    meter_id = fresh_id("M")
    lines = b"\n".join(
        [
            orjson.dumps(meter(meter_id, timestamp=EPOCH_NOW - 1)),
            b"{not json",
            b"",
            orjson.dumps(meter(meter_id, timestamp=EPOCH_NOW - 2)),
        ]
    )
    answer = post(client, lines, "application/x-ndjson")

    assert answer.status_code == 207
    assert [i["status"] for i in answer.json["items"]] == ["accepted", "rejected", "accepted"]
    assert len(store.read_stream(f"meter-{meter_id}")) == 2


def test_a_mapping_is_stored_and_answered_with_its_position(
    client: testing.TestClient, store: EventStore
) -> None:
    vehicle_id, meter_id = fresh_id("V"), fresh_id("M")
    answer = client.simulate_post(
        "/v1/mappings", json={"vehicleId": vehicle_id, "meterId": meter_id}
    )

    assert answer.status_code == 202
    [stored] = store.read_stream(f"vehicle-{vehicle_id}-mappings")
    assert stored.payload == {
        "vehicleId": vehicle_id,
        "meterId": meter_id,
        "effectiveFrom": NOW.isoformat(),
    }
    assert answer.json["position"] == stored.position


def test_a_mapping_with_an_explicit_time_sent_twice_is_a_duplicate(
    client: testing.TestClient,
) -> None:
    body = {
        "vehicleId": fresh_id("V"),
        "meterId": fresh_id("M"),
        "effectiveFrom": "2026-05-01T00:00:00Z",
    }
    assert client.simulate_post("/v1/mappings", json=body).json["status"] == "accepted"
    assert client.simulate_post("/v1/mappings", json=body).json["status"] == "duplicate"


def test_health_and_ready_answer(client: testing.TestClient) -> None:
    assert client.simulate_get("/health").json == {"status": "ok"}
    ready = client.simulate_get("/ready")
    assert ready.status_code == 200 and ready.json["status"] == "ready"


def test_an_unknown_route_is_a_problem_404(client: testing.TestClient) -> None:
    answer = client.simulate_get("/v1/nothing-here")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json["status"] == 404


def test_batch_limit_is_the_configured_one(client: testing.TestClient) -> None:
    at_limit = [meter(fresh_id("M")) for _ in range(LIMITS.max_batch_items)]
    assert post(client, at_limit).status_code == 202


@pytest.mark.parametrize("method", ["simulate_get", "simulate_put", "simulate_delete"])
def test_other_methods_on_ingest_are_405(client: testing.TestClient, method: str) -> None:
    answer = getattr(client, method)("/v1/ingest")
    assert answer.status_code == 405
    assert answer.json["status"] == 405
