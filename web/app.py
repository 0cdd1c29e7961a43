"""``create_app(deps)``: the Falcon application with its routes and error handling."""

from __future__ import annotations

import falcon

from web import problems
from web.context import Dependencies, RequestIdMiddleware
from web.health import HealthResource, ReadyResource
from web.ingest import IngestResource
from web.mappings import MappingsResource


def create_app(deps: Dependencies) -> falcon.App:
    app = falcon.App(middleware=[RequestIdMiddleware()], cors_enable=False)
    app.req_options.strip_url_path_trailing_slash = True
    app.add_route("/health", HealthResource())
    app.add_route("/ready", ReadyResource(deps))
    app.add_route("/v1/ingest", IngestResource(deps))
    app.add_route("/v1/mappings", MappingsResource(deps))
    problems.register(app)
    return app
