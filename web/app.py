"""``create_app(deps)``: the Falcon ASGI application with its routes and error handling."""

from __future__ import annotations

from typing import Any

import falcon.asgi

from web import problems
from web.analytics import PerformanceResource
from web.auth import AuthMiddleware, RateLimiter, Refusals
from web.context import Dependencies, RequestIdMiddleware
from web.devices import MeterResource, VehicleResource, meters, vehicles
from web.events import EventsResource
from web.fleet import FleetSummaryResource
from web.health import HealthResource, ReadyResource
from web.ingest import IngestResource
from web.ledger import LedgerCheckpointsResource
from web.mappings import MappingsResource
from web.openapi import add_docs, load_document
from web.projection_status import ProjectionsResource
from web.readings import MeterReadingsResource, VehicleReadingsResource
from web.tokens import TokenResource, TokensResource

PUBLIC_PREFIXES = ("/docs",)  # the Swagger UI page and its static files


def create_app(deps: Dependencies) -> falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response]:
    security = deps.security
    refusals = Refusals(security.record_refusal)
    auth = AuthMiddleware(
        enabled=security.enabled,
        key=security.key,
        lookup=security.lookup,
        peek=security.peek,
        refusals=refusals,
        limiter=RateLimiter(security.rate, security.burst) if security.rate > 0 else None,
        public_prefixes=PUBLIC_PREFIXES,
    )
    middleware: list[Any] = [RequestIdMiddleware(), auth]
    app = falcon.asgi.App(middleware=middleware, cors_enable=False)
    app.req_options.strip_url_path_trailing_slash = True
    # Query strings are read as sent: "a=1&a=2" stays a repeat (refused), "" stays a value.
    app.req_options.auto_parse_qs_csv = False
    app.req_options.keep_blank_qs_values = True
    app.add_route("/health", HealthResource())
    app.add_route("/ready", ReadyResource(deps))
    app.add_route("/v1/ingest", IngestResource(deps, refusals))
    app.add_route("/v1/mappings", MappingsResource(deps))
    app.add_route("/v1/analytics/performance/{vehicle_id}", PerformanceResource(deps))
    app.add_route("/v1/vehicles", vehicles(deps))
    app.add_route("/v1/vehicles/{vehicle_id}", VehicleResource(deps))
    app.add_route("/v1/vehicles/{vehicle_id}/readings", VehicleReadingsResource(deps))
    app.add_route("/v1/meters", meters(deps))
    app.add_route("/v1/meters/{meter_id}", MeterResource(deps))
    app.add_route("/v1/meters/{meter_id}/readings", MeterReadingsResource(deps))
    app.add_route("/v1/fleet/summary", FleetSummaryResource(deps))
    app.add_route("/v1/events", EventsResource(deps))
    app.add_route("/v1/projections", ProjectionsResource(deps))
    app.add_route("/v1/ledger/checkpoints", LedgerCheckpointsResource(deps))
    app.add_route("/v1/tokens", TokensResource(deps))
    app.add_route("/v1/tokens/{token_id}", TokenResource(deps))
    add_docs(app, load_document())
    problems.register(app)
    return app
