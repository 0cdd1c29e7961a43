"""An app wired to the real database, driven through Falcon's test client (ASGI)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from falcon import testing
from psycopg_pool import ConnectionPool

from commands.credentials import Credentials
from eventstore import EventStore
from main import readiness_probe
from projections.catalogue import NAMES
from queries.pool import ReadPool
from web.app import create_app
from web.context import Dependencies, Limits, ReadSettings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LIMITS = Limits(max_body_bytes=64 * 1024, max_batch_items=50)
# Reads wait at most a moment for their minimum position, so lagging answers come quickly.
READ = ReadSettings(max_wait=0.3)


@pytest.fixture
def store(pool: ConnectionPool[Any]) -> EventStore:
    return EventStore(pool)


@pytest.fixture
def client(pool: ConnectionPool[Any]) -> testing.TestClient:
    return make_client(pool)


def make_client(
    pool: ConnectionPool[Any],
    read: ReadSettings = READ,
    reads: ConnectionPool[Any] | None = None,
) -> testing.TestClient:
    """The app over ``pool`` (and ``reads`` for the read side, when given)."""
    deps = Dependencies(
        store=EventStore(pool),
        reads=ReadPool(reads or pool),
        clock=lambda: NOW,
        readiness=lambda: readiness_probe(pool),
        limits=LIMITS,
        read=read,
        projections=NAMES,
        credentials=Credentials(pool, b"the e2e tests' token key"),
    )
    return testing.TestClient(create_app(deps))


@pytest.fixture
def fresh_client(fresh_pool: ConnectionPool[Any]) -> testing.TestClient:
    """A client on a database of its own: for lists and fleet figures, which are global."""
    return make_client(fresh_pool)


def post(client: testing.TestClient, path: str, body: object) -> dict[str, Any]:
    """POST ``body`` as JSON, which must be accepted (202); the answer's body."""
    answer = client.simulate_post(
        path, body=orjson.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 202, answer.text
    result: dict[str, Any] = answer.json
    return result
