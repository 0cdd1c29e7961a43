"""The OpenAPI document describes every route the app serves, and is valid OpenAPI 3.1."""

from __future__ import annotations

import re
from typing import Any

import falcon.inspect
from falcon import testing
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from web.openapi import load_document


def template(path: str) -> str:
    """Field names aside, and trailing slashes aside (the app strips them)."""
    return re.sub(r"\{[^}]+\}", "{}", path).rstrip("/") or "/"


def served(app: falcon.App) -> set[tuple[str, str]]:
    """(path template, method) of every responder the app's resources define."""
    found = set()
    for route in falcon.inspect.inspect_routes(app):
        if route.path.startswith("/docs/static"):
            continue
        for method in route.methods:
            if not method.internal:
                found.add((template(route.path), method.method))
    return found


def test_every_route_and_method_is_in_the_document_and_nothing_else(
    client: testing.TestClient,
) -> None:
    document = client.simulate_get("/openapi.json").json
    documented = {
        (template(path), method.upper())
        for path, item in document["paths"].items()
        for method in item
    }
    assert served(client.app) == documented


def test_the_document_is_valid_openapi_3_1() -> None:
    document: dict[str, Any] = load_document()
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on any violation


def test_the_validator_would_refuse_a_broken_document() -> None:
    document = load_document()
    document["paths"]["/v1/vehicles"]["get"]["responses"]["200"] = {"content": 3}
    try:
        validate(document)
    except OpenAPIValidationError:
        return
    raise AssertionError("a broken document passed validation")


def test_the_docs_page_renders_the_document_with_assets_served_locally(
    client: testing.TestClient,
) -> None:
    page = client.simulate_get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/openapi.json" in page.text
    assets = re.findall(r'(?:src|href)="(/docs/static/[^"]+)"', page.text)
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets)
    for asset in assets:
        assert client.simulate_get(asset).status_code == 200, asset
