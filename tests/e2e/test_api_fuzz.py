"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis):
whatever a client sends, no answer is a 500, and every answer matches the document.

Each documented operation is its own test; schemathesis' Hypothesis strategy for the
operation generates the requests (valid and invalid ones), sent through the ASGI app.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from psycopg_pool import ConnectionPool
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.openapi import from_asgi

from tests.e2e.conftest import make_client
from web.context import ReadSettings
from web.openapi import load_document

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
OPERATIONS = [
    (path, method.upper())
    for path, item in load_document()["paths"].items()
    for method in item
    if path != "/docs"  # HTML, not an API answer
]


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_no_request_gets_a_500_and_every_answer_matches_the_document(
    pool: ConnectionPool[Any], path: str, method: str
) -> None:
    app = make_client(pool, ReadSettings(max_wait=0.01)).app
    operation = from_asgi("/openapi.json", app)[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    def exchange(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)

    exchange()
