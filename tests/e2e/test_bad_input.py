"""Every kind of bad input gets its status and a problem body; nothing of it is stored,
and a valid reading sent right after is stored."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from falcon import testing

from eventstore import EventStore
from tests.e2e.conftest import LIMITS, NOW
from tests.e2e.test_ingest_api import EPOCH_NOW, meter, vehicle
from tests.ids import fresh_id

M = "M-bad"
V = "V-bad"

# (name, body bytes, content type, status, field expected in the errors or None)
CASES: list[tuple[str, bytes, str, int, str | None]] = [
    ("malformed JSON", b'{"meterId": "M-bad", ', "application/json", 400, None),
    (
        "NaN literal",
        b'{"meterId":"M-bad","kwhConsumedAc":NaN,"voltage":1,"timestamp":1}',
        "application/json",
        400,
        None,
    ),
    (
        "Infinity literal",
        b'{"meterId":"M-bad","kwhConsumedAc":Infinity,"voltage":1,"timestamp":1}',
        "application/json",
        400,
        None,
    ),
    (
        "1e309",
        b'{"meterId":"M-bad","kwhConsumedAc":1e309,"voltage":1,"timestamp":1}',
        "application/json",
        400,
        None,
    ),
    ("null body", b"null", "application/json", 422, ""),
    ("number body", b"42", "application/json", 422, ""),
    ("string body", b'"reading"', "application/json", 422, ""),
    ("empty object", b"{}", "application/json", 422, "meterId"),
    ("empty array", b"[]", "application/json", 422, ""),
    ("empty body", b"", "application/json", 400, None),
    ("text/plain", orjson.dumps(meter(M)), "text/plain", 415, None),
    ("no content type", orjson.dumps(meter(M)), "", 415, None),
    ("unknown field", orjson.dumps(meter(M, colour="red")), "application/json", 422, "colour"),
    (
        "server-owned field",
        orjson.dumps(meter(M, receivedAt=1)),
        "application/json",
        422,
        "receivedAt",
    ),
    ("both ids", orjson.dumps(meter(M, vehicleId=V)), "application/json", 422, "vehicleId"),
    (
        "neither id",
        orjson.dumps({"kwhConsumedAc": 1, "voltage": 1, "timestamp": 1}),
        "application/json",
        422,
        "meterId",
    ),
    ("empty id", orjson.dumps(meter("")), "application/json", 422, "meterId"),
    ("id too long", orjson.dumps(meter("M" * 65)), "application/json", 422, "meterId"),
    ("id with a space", orjson.dumps(meter("M bad")), "application/json", 422, "meterId"),
    ("id with a slash", orjson.dumps(vehicle("V/bad")), "application/json", 422, "vehicleId"),
    ("id not a string", orjson.dumps(meter(17)), "application/json", 422, "meterId"),
    (
        "energy as string",
        orjson.dumps(meter(M, kwhConsumedAc="15.5")),
        "application/json",
        422,
        "kwhConsumedAc",
    ),
    (
        "voltage as boolean",
        orjson.dumps(meter(M, voltage=True)),
        "application/json",
        422,
        "voltage",
    ),
    ("soc null", orjson.dumps(vehicle(V, soc=None)), "application/json", 422, "soc"),
    (
        "timestamp boolean",
        orjson.dumps(meter(M, timestamp=True)),
        "application/json",
        422,
        "timestamp",
    ),
    (
        "negative AC energy",
        orjson.dumps(meter(M, kwhConsumedAc=-0.1)),
        "application/json",
        422,
        "kwhConsumedAc",
    ),
    (
        "negative DC energy",
        orjson.dumps(vehicle(V, kwhDeliveredDc=-5)),
        "application/json",
        422,
        "kwhDeliveredDc",
    ),
    ("soc below 0", orjson.dumps(vehicle(V, soc=-1)), "application/json", 422, "soc"),
    ("soc above 100", orjson.dumps(vehicle(V, soc=100.5)), "application/json", 422, "soc"),
    ("voltage zero", orjson.dumps(meter(M, voltage=0)), "application/json", 422, "voltage"),
    ("voltage negative", orjson.dumps(meter(M, voltage=-230)), "application/json", 422, "voltage"),
    (
        "battery too cold",
        orjson.dumps(vehicle(V, batteryTemp=-273)),
        "application/json",
        422,
        "batteryTemp",
    ),
    (
        "battery too hot",
        orjson.dumps(vehicle(V, batteryTemp=1000)),
        "application/json",
        422,
        "batteryTemp",
    ),
    (
        "ISO without offset",
        orjson.dumps(meter(M, timestamp="2026-06-01T11:00:00")),
        "application/json",
        422,
        "timestamp",
    ),
    (
        "not a date",
        orjson.dumps(meter(M, timestamp="yesterday")),
        "application/json",
        422,
        "timestamp",
    ),
    (
        "6 minutes ahead",
        orjson.dumps(meter(M, timestamp=EPOCH_NOW + 360)),
        "application/json",
        422,
        "timestamp",
    ),
    (
        "before 2000",
        orjson.dumps(meter(M, timestamp=946684799)),
        "application/json",
        422,
        "timestamp",
    ),
    ("huge epoch", orjson.dumps(meter(M, timestamp=10**18)), "application/json", 422, "timestamp"),
    (
        "body over the size limit",
        b'{"pad": "' + b"x" * LIMITS.max_body_bytes + b'"}',
        "application/json",
        413,
        None,
    ),
    (
        "batch over the item limit",
        orjson.dumps(
            [meter(M, timestamp=EPOCH_NOW - n) for n in range(LIMITS.max_batch_items + 1)]
        ),
        "application/json",
        413,
        None,
    ),
    (
        "ndjson over the item limit",
        b"\n".join(
            orjson.dumps(meter(M, timestamp=EPOCH_NOW - n))
            for n in range(LIMITS.max_batch_items + 1)
        ),
        "application/x-ndjson",
        413,
        None,
    ),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_gets_its_status_stores_nothing_and_a_valid_reading_after_is_stored(
    client: testing.TestClient,
    store: EventStore,
    body: bytes,
    content_type: str,
    status: int,
    field: str | None,
) -> None:
    head = store.head()
    headers = {"Content-Type": content_type} if content_type else {}

    answer = client.simulate_post("/v1/ingest", body=body, headers=headers)

    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = answer.json
    assert problem["status"] == status
    assert problem["title"] and problem["detail"] and problem["type"].startswith("/problems/")
    if field is not None:
        assert field in [e["field"] for e in problem["errors"]], problem
    assert store.head() == head, "bad input must store nothing"

    valid_id = fresh_id("M")
    follow = client.simulate_post("/v1/ingest", json=meter(valid_id))
    assert follow.status_code == 202
    assert len(store.read_stream(f"meter-{valid_id}")) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"null", ""),
        (b"{}", "vehicleId"),
        (orjson.dumps({"vehicleId": "V1"}), "meterId"),
        (orjson.dumps({"vehicleId": "V1", "meterId": "M1", "extra": 1}), "extra"),
        (orjson.dumps({"vehicleId": "V 1", "meterId": "M1"}), "vehicleId"),
        (
            orjson.dumps(
                {"vehicleId": "V1", "meterId": "M1", "effectiveFrom": "2026-01-01T00:00:00"}
            ),
            "effectiveFrom",
        ),
        (
            orjson.dumps(
                {"vehicleId": "V1", "meterId": "M1", "effectiveFrom": (NOW.timestamp() + 3600)}
            ),
            "effectiveFrom",
        ),
    ],
)
def test_a_bad_mapping_is_422_naming_the_field_and_stores_nothing(
    client: testing.TestClient, store: EventStore, body: bytes, field: str
) -> None:
    head = store.head()
    answer = client.simulate_post(
        "/v1/mappings", body=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422
    assert field in [e["field"] for e in answer.json["errors"]]
    assert store.head() == head
