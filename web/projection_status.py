"""``GET /v1/projections``: each projection's checkpoint, lag and state, for engineers."""

from __future__ import annotations

import falcon

from domain.credentials import Action
from queries.projection_status import projector_sessions, statuses
from web.context import Dependencies
from web.offload import threaded
from web.params import Params
from web.representation import json_bytes, plain


@threaded
class ProjectionsResource:
    AUTH = {"GET": Action.OPERATE}

    def __init__(self, deps: Dependencies) -> None:
        self._deps = deps

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        Params(req, ()).done()
        with self._deps.reads.connection() as conn:
            sessions = projector_sessions(conn)
            found = statuses(conn, self._deps.projections, sessions=sessions)
        resp.data = json_bytes({"projections": plain(found), "projectorSessions": sessions})
