"""``GET /v1/ledger/checkpoints``: the ledger's signed checkpoints, for auditors to keep."""

from __future__ import annotations

import io

import falcon

from domain.credentials import Action
from domain.ledger import write_checkpoints
from queries.ledger import checkpoints
from web.bodies import NDJSON
from web.context import Dependencies
from web.offload import threaded
from web.params import Params


@threaded
class LedgerCheckpointsResource:
    AUTH = {"GET": Action.AUDIT}

    def __init__(self, deps: Dependencies) -> None:
        self._deps = deps

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        Params(req, ()).done()
        with self._deps.reads.connection() as conn:
            found = checkpoints(conn)
        out = io.StringIO()
        write_checkpoints(found, out)
        resp.content_type = NDJSON
        resp.data = out.getvalue().encode()
