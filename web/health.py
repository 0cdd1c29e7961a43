"""``/health`` (the process answers) and ``/ready`` (the database answers and is migrated)."""

from __future__ import annotations

import falcon
import orjson

from web.auth import PUBLIC
from web.context import Dependencies
from web.offload import threaded
from web.problems import Problem

_OK = orjson.dumps({"status": "ok"})


class HealthResource:
    AUTH = PUBLIC

    async def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = _OK


@threaded
class ReadyResource:
    AUTH = PUBLIC

    def __init__(self, deps: Dependencies) -> None:
        self._deps = deps

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        readiness = self._deps.readiness()
        if not readiness.ready:
            raise Problem(
                503,
                "not-ready",
                "Service Unavailable",
                readiness.detail,
                headers={"Retry-After": "5"},
                extra={"pendingMigrations": list(readiness.pending_migrations)},
            )
        resp.data = orjson.dumps({"status": "ready", "detail": readiness.detail})
