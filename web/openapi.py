"""The OpenAPI document (``openapi.yaml`` beside this module, the source of truth for
clients) at ``/openapi.json``, and Swagger UI at ``/docs`` (served from the installed
``swagger-ui-py`` package: no CDN, so it works offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import falcon
import falcon.asgi
import orjson
import yaml
from swagger_ui import api_doc

from web.auth import PUBLIC

DOCUMENT = Path(__file__).with_name("openapi.yaml")


def load_document(path: Path = DOCUMENT) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


class OpenApiResource:
    AUTH = PUBLIC

    def __init__(self, document: dict[str, Any]) -> None:
        self._body = orjson.dumps(document)

    async def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = self._body


def add_docs(
    app: falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response], document: dict[str, Any]
) -> None:
    """``GET /openapi.json`` and the browsable page ``GET /docs``."""
    app.add_route("/openapi.json", OpenApiResource(document))
    api_doc(
        app,
        config_rel_url="/openapi.json",
        url_prefix="/docs",
        title=document["info"]["title"],
    )
