"""An app wired to the real database, driven through Falcon's WSGI test client."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from falcon import testing
from psycopg_pool import ConnectionPool

from eventstore import EventStore
from main import readiness_probe
from web.app import create_app
from web.context import Dependencies, Limits

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LIMITS = Limits(max_body_bytes=64 * 1024, max_batch_items=50)


@pytest.fixture
def store(pool: ConnectionPool[Any]) -> EventStore:
    return EventStore(pool)


@pytest.fixture
def client(pool: ConnectionPool[Any], store: EventStore) -> testing.TestClient:
    deps = Dependencies(
        store=store, clock=lambda: NOW, readiness=lambda: readiness_probe(pool), limits=LIMITS
    )
    return testing.TestClient(create_app(deps))
