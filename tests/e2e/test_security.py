"""Credentials, roles, device scoping and limits, over HTTP on a database of their own.

The matrix: every route, called with no token, a malformed one, an unknown one, a revoked
one, each role's, and a device token writing for another device. Each cell answers its
specified status, and a denied request stores nothing (events and credentials unchanged)
but is recorded among the refusals.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson
import psycopg
import pytest
from falcon import testing
from psycopg_pool import ConnectionPool

from commands.credentials import Credentials
from queries.credentials import find
from tests.databases import Databases
from tests.e2e.conftest import LIMITS, NOW
from tests.projection_runs import project_through
from web.app import create_app
from web.context import Dependencies, Security

KEY = b"the test server's token key"
COUNTS = """
SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM credentials),
       (SELECT count(*) FROM auth_refusals)
"""
READING_AT = int((NOW - timedelta(minutes=5)).timestamp())


def secure_client(
    pool: ConnectionPool[Any], **security: Any
) -> tuple[testing.TestClient, Credentials]:
    from eventstore import EventStore
    from main import readiness_probe
    from queries.pool import ReadPool

    credentials = Credentials(pool, KEY)

    def lookup(token_id: str) -> Any:
        with pool.connection() as conn:
            return find(conn, token_id)

    deps = Dependencies(
        store=EventStore(pool),
        reads=ReadPool(pool),
        clock=lambda: NOW,
        readiness=lambda: readiness_probe(pool),
        limits=LIMITS,
        projections=("meter_live",),
        security=Security(
            enabled=True,
            key=KEY,
            lookup=lookup,
            record_refusal=credentials.record_refusal,
            **security,
        ),
        credentials=credentials,
    )
    return testing.TestClient(create_app(deps)), credentials


class World:
    """A database with a vehicle, a meter, a reading each, and a token of every kind."""

    def __init__(self, url: str, pool: ConnectionPool[Any]) -> None:
        self.url, self.pool = url, pool
        self.client, self.credentials = secure_client(pool)
        self.tokens: dict[str, str | None] = {"none": None, "malformed": "energy_nothex"}
        self.tokens["unknown"] = "energy_" + "a" * 12 + "_" + "b" * 64
        for role in ("device", "reader", "auditor", "operator"):
            devices = ["V-own", "M-own"] if role == "device" else []
            self.tokens[role] = self.issue(role, role, devices)
        self.tokens["revoked"] = self.issue("gone", "operator")
        self.credentials.revoke(self.tokens["revoked"][7:19], revoked_by="test", now=NOW)
        operator = self.tokens["operator"]
        last = 0
        for body in (
            {
                "vehicleId": "V-own",
                "soc": 50,
                "kwhDeliveredDc": 1,
                "batteryTemp": 20,
                "timestamp": READING_AT,
            },
            {"meterId": "M-own", "kwhConsumedAc": 1.2, "voltage": 230, "timestamp": READING_AT},
        ):
            last = self.call("POST", "/v1/ingest", body, operator).json["position"]
        with psycopg.connect(url, autocommit=True) as conn:
            project_through(conn, last)

    def issue(self, identity: str, role: str, devices: list[str] | None = None) -> str:
        _, token = self.credentials.issue(
            {"identity": identity, "role": role, "devices": devices or []},
            issued_by="test",
            now=NOW,
        )
        return token

    def call(
        self, method: str, path: str, body: object | None, token: str | None, **extra: Any
    ) -> testing.Result:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.simulate_request(
            method,
            path,
            body=orjson.dumps(body) if body is not None else None,
            headers=headers,
            **extra,
        )

    def counts(self) -> tuple[int, int, int]:
        with psycopg.connect(self.url) as conn:
            row = conn.execute(COUNTS).fetchone()
        assert row is not None
        return row


@pytest.fixture(scope="module")
def world(databases: Databases) -> Any:
    url = databases.create()
    with ConnectionPool(url, min_size=1, max_size=8, open=True) as pool:
        yield World(url, pool)


def reading(device: str, minutes: int) -> dict[str, Any]:
    at = int((NOW - timedelta(minutes=minutes)).timestamp())
    if device.startswith("M"):
        return {"meterId": device, "kwhConsumedAc": 1.0, "voltage": 230, "timestamp": at}
    return {
        "vehicleId": device,
        "soc": 40,
        "kwhDeliveredDc": 0.9,
        "batteryTemp": 21,
        "timestamp": at,
    }


# (name, method, path, body builder, what a role needs -> success status)
Route = tuple[str, str, str, Callable[[Any, int], object | None], dict[str, int]]
OPERATOR_ONLY = {"operator": 200}
READERS = {"reader": 200, "operator": 200}
ROUTES: list[Route] = [
    ("health", "GET", "/health", lambda w, n: None, {"*": 200}),
    ("ready", "GET", "/ready", lambda w, n: None, {"*": 200}),
    ("openapi", "GET", "/openapi.json", lambda w, n: None, {"*": 200}),
    ("docs", "GET", "/docs", lambda w, n: None, {"*": 200}),
    (
        "ingest own",
        "POST",
        "/v1/ingest",
        lambda w, n: reading("V-own", 10 + n),
        {"device": 202, "operator": 202},
    ),
    (
        "ingest batch with a foreign id",
        "POST",
        "/v1/ingest",
        lambda w, n: [reading("M-own", 500 + n), reading("M-else", 500 + n)],
        {"operator": 202},
    ),
    (
        "map",
        "POST",
        "/v1/mappings",
        lambda w, n: {"vehicleId": "V-own", "meterId": "M-own"},
        {"operator": 202},
    ),
    ("performance", "GET", "/v1/analytics/performance/V-own", lambda w, n: None, READERS),
    ("vehicles", "GET", "/v1/vehicles", lambda w, n: None, READERS),
    ("vehicle", "GET", "/v1/vehicles/V-own", lambda w, n: None, READERS),
    ("vehicle readings", "GET", "/v1/vehicles/V-own/readings", lambda w, n: None, READERS),
    ("meters", "GET", "/v1/meters", lambda w, n: None, READERS),
    ("meter", "GET", "/v1/meters/M-own", lambda w, n: None, READERS),
    ("meter readings", "GET", "/v1/meters/M-own/readings", lambda w, n: None, READERS),
    ("fleet", "GET", "/v1/fleet/summary", lambda w, n: None, READERS),
    ("events", "GET", "/v1/events", lambda w, n: None, {"auditor": 200}),
    ("ledger", "GET", "/v1/ledger/checkpoints", lambda w, n: None, {"auditor": 200}),
    ("projections", "GET", "/v1/projections", lambda w, n: None, OPERATOR_ONLY),
    ("tokens", "GET", "/v1/tokens", lambda w, n: None, OPERATOR_ONLY),
    (
        "create token",
        "POST",
        "/v1/tokens",
        lambda w, n: {"identity": f"dashboard-{n}", "role": "reader"},
        {"operator": 201},
    ),
    ("revoke token", "DELETE", "/v1/tokens/{fresh}", lambda w, n: None, OPERATOR_ONLY),
]
CALLERS = ["none", "malformed", "unknown", "revoked", "device", "reader", "auditor", "operator"]
UNAUTHENTICATED = {"none", "malformed", "unknown", "revoked"}


def expected(caller: str, allowed: dict[str, int]) -> int:
    if "*" in allowed:
        return allowed["*"]
    if caller in UNAUTHENTICATED:
        return 401
    return allowed.get(caller, 403)


CELLS = [(route, caller) for route in ROUTES for caller in CALLERS]


@pytest.mark.parametrize(("route", "caller"), CELLS, ids=[f"{r[0]}-{c}" for r, c in CELLS])
def test_every_route_answers_every_caller_as_specified_and_a_refusal_stores_nothing(
    world: World, route: Route, caller: str
) -> None:
    name, method, path, body, allowed = route
    n = CELLS.index((route, caller))
    if "{fresh}" in path:
        path = path.replace("{fresh}", world.issue(f"victim-{n}", "reader")[7:19])
    before = world.counts()
    answer = world.call(method, path, body(world, n), world.tokens[caller])
    status = expected(caller, allowed)
    assert answer.status_code == status, answer.text
    after = world.counts()
    if status in (401, 403):
        assert answer.headers["content-type"] == "application/problem+json"
        assert after[:2] == before[:2], "a refused request stored something"
        assert after[2] == before[2] + 1, "the refusal was not recorded"
        if status == 401:
            assert answer.headers["www-authenticate"].startswith("Bearer")


def test_a_device_token_posting_for_another_device_is_refused_whole(world: World) -> None:
    before = world.counts()
    answer = world.call(
        "POST",
        "/v1/ingest",
        [reading("V-own", 900), reading("V-other", 900)],
        world.tokens["device"],
    )
    assert answer.status_code == 403 and "V-other" in answer.json["detail"]
    assert world.counts()[:2] == before[:2]
    ndjson = b"\n".join(orjson.dumps(r) for r in (reading("M-own", 901), reading("M-x", 901)))
    answer = world.client.simulate_post(
        "/v1/ingest",
        body=ndjson,
        headers={
            "Content-Type": "application/x-ndjson",
            "Authorization": f"Bearer {world.tokens['device']}",
        },
    )
    assert answer.status_code == 403 and world.counts()[:2] == before[:2]
    answer = world.call("POST", "/v1/ingest", reading("M-own", 902), world.tokens["device"])
    assert answer.status_code == 202  # a valid one right after is stored


def test_events_of_a_request_name_its_credential_and_tokens_are_events_too(world: World) -> None:
    token = world.tokens["device"]
    answer = world.call("POST", "/v1/ingest", reading("V-own", 1200), token)
    assert answer.status_code == 202
    with psycopg.connect(world.url) as conn:
        [(metadata,)] = conn.execute(
            "SELECT metadata FROM events WHERE position = %s", [answer.json["position"]]
        ).fetchall()
        issued = conn.execute(
            "SELECT payload FROM events WHERE event_type = 'TokenIssued'"
            " AND payload->>'tokenId' = %s",
            [token[7:19]],
        ).fetchall()
        revoked = conn.execute(
            "SELECT count(*) FROM events WHERE event_type = 'TokenRevoked'"
        ).fetchone()
    assert metadata["credentialId"] == token[7:19]
    assert [p["role"] for (p,) in issued] == ["device"]
    assert issued[0][0]["devices"] == ["M-own", "V-own"]
    assert revoked is not None and revoked[0] >= 1


def test_a_revoked_token_is_refused_at_once(world: World) -> None:
    token = world.issue("soon-revoked", "reader")
    assert world.call("GET", "/v1/vehicles", None, token).status_code == 200
    answer = world.call("DELETE", f"/v1/tokens/{token[7:19]}", None, world.tokens["operator"])
    assert answer.status_code == 200 and answer.json["tokenId"] == token[7:19]
    answer = world.call("GET", "/v1/vehicles", None, token)
    assert answer.status_code == 401 and "revoked" in answer.json["detail"]
    again = world.call("DELETE", f"/v1/tokens/{token[7:19]}", None, world.tokens["operator"])
    assert again.status_code == 404


def test_an_identity_holds_at_most_two_live_tokens_so_that_it_can_rotate(world: World) -> None:
    operator = world.tokens["operator"]
    made = [
        world.call(
            "POST",
            "/v1/tokens",
            {"identity": "gateway-7", "role": "device", "devices": ["V-own"]},
            operator,
        )
        for _ in range(3)
    ]
    assert [a.status_code for a in made] == [201, 201, 422]
    assert made[2].json["errors"][0]["field"] == "identity"
    first = made[0].json
    assert first["token"].startswith(f"energy_{first['tokenId']}_")
    world.call("DELETE", f"/v1/tokens/{first['tokenId']}", None, operator)
    third = world.call(
        "POST",
        "/v1/tokens",
        {"identity": "gateway-7", "role": "device", "devices": ["V-own"]},
        operator,
    )
    assert third.status_code == 201
    listed = world.call("GET", "/v1/tokens", None, operator).json["tokens"]
    assert {t["tokenId"] for t in listed if t["identity"] == "gateway-7"} == {
        made[1].json["tokenId"],
        third.json["tokenId"],
    }
    assert all("token" not in t and "tokenHash" not in t for t in listed)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"identity": "x", "role": "admin"}, "role"),
        ({"identity": "x", "role": "device"}, "devices"),
        ({"identity": "x", "role": "reader", "devices": ["V1"]}, "devices"),
        ({"identity": "x y", "role": "reader"}, "identity"),
        ({"identity": "x", "role": "reader", "secret": "mine"}, "secret"),
    ],
)
def test_a_bad_token_request_is_a_422_naming_the_field(
    world: World, body: dict[str, Any], field: str
) -> None:
    answer = world.call("POST", "/v1/tokens", body, world.tokens["operator"])
    assert answer.status_code == 422
    assert field in [e["field"] for e in answer.json["errors"]]


def test_a_database_dump_holds_no_token_in_plain_text(world: World) -> None:
    dump = subprocess.run(
        ["pg_dump", "--data-only", psycopg.conninfo.make_conninfo(world.url)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    secrets = [
        token.rsplit("_", 1)[1]
        for token in world.tokens.values()
        if token and token.count("_") == 2
    ]
    assert len(secrets) >= 5
    for secret in secrets:
        assert secret not in dump
    assert world.tokens["reader"][7:19] in dump  # the public id is there, as it should be


def test_the_rate_limit_holds_under_concurrent_requests_from_one_credential(
    world: World,
) -> None:
    client, _ = secure_client(world.pool, rate=5.0, burst=10.0)
    token = world.tokens["reader"]
    statuses: list[int] = []
    retry_after: list[str] = []

    async def hammer(conductor: testing.ASGIConductor) -> None:
        for _ in range(10):
            answer = await conductor.simulate_get(
                "/v1/vehicles", headers={"Authorization": f"Bearer {token}"}
            )
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                retry_after.append(answer.headers["retry-after"])

    async def eight_clients_at_once() -> None:
        async with testing.ASGIConductor(client.app) as conductor:
            await asyncio.gather(*(hammer(conductor) for _ in range(8)))

    asyncio.run(eight_clients_at_once())
    assert len(statuses) == 80
    assert statuses.count(200) + statuses.count(429) == 80
    # The burst, plus what 5/s refills in the few seconds the 80 requests took at most.
    assert 10 <= statuses.count(200) <= 10 + 5 * 5
    assert retry_after and all(int(value) >= 1 for value in retry_after)
    other = client.simulate_get(
        "/v1/vehicles", headers={"Authorization": f"Bearer {world.tokens['operator']}"}
    )
    assert other.status_code == 200  # a bucket per credential


def test_a_body_nested_too_deeply_is_refused(world: World) -> None:
    nested: object = reading("V-own", 3000)
    for _ in range(9):
        nested = [nested]
    answer = world.call("POST", "/v1/ingest", nested, world.tokens["operator"])
    assert answer.status_code == 422 and answer.json["type"] == "/problems/too-deep"


def test_the_api_database_role_may_insert_and_select_events_but_never_change_them(
    world: World,
) -> None:
    with psycopg.connect(world.url, autocommit=True) as owner:
        owner.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
    try:
        with psycopg.connect(world.url, autocommit=True, options="-c role=energy_api") as api:
            assert api.execute("SELECT count(*) FROM events").fetchone()
            for statement in (
                "UPDATE events SET payload = '{}'::jsonb",
                "DELETE FROM events",
                "TRUNCATE events",
                "UPDATE meter_live SET voltage = 0",
                "DELETE FROM ledger_entries",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    api.execute(statement)
        with psycopg.connect(
            world.url, autocommit=True, options="-c role=energy_projector"
        ) as projector:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                projector.execute("DELETE FROM events")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                projector.execute("INSERT INTO credentials SELECT * FROM credentials")
    finally:
        with psycopg.connect(world.url, autocommit=True) as owner:
            owner.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
