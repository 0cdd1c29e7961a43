"""Token management for operators: ``POST /v1/tokens``, ``GET /v1/tokens``,
``DELETE /v1/tokens/{tokenId}``. A new token is shown once, in the answer that creates it."""

from __future__ import annotations

import asyncio
import re

import falcon
import falcon.asgi

from commands.payloads import Invalid
from domain.credentials import Action
from queries.credentials import tokens
from web.auth import principal_of
from web.context import Dependencies, request_json
from web.offload import threaded
from web.params import Params
from web.problems import Problem, validation_problem
from web.representation import json_bytes, plain

TOKEN_ID = re.compile(r"[0-9a-f]{12}")


@threaded
class TokensResource:
    AUTH = {"GET": Action.OPERATE, "POST": Action.OPERATE}

    def __init__(self, deps: Dependencies) -> None:
        self._deps = deps

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = Params(req, ("revoked",))
        show_revoked = params.text("revoked")
        if show_revoked not in (None, "true", "false"):
            params.refuse("revoked", "must be true or false")
        params.done()
        with self._deps.reads.connection() as conn:
            found = tokens(conn, include_revoked=show_revoked == "true")
        resp.data = json_bytes({"tokens": plain(found)})

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await request_json(req, self._deps)
        await asyncio.to_thread(self._post, req, resp, body)

    def _post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, body: object) -> None:
        credentials = self._deps.credentials
        assert credentials is not None  # wired whenever the API runs
        try:
            event, token = credentials.issue(
                body, issued_by=principal_of(req).identity, now=self._deps.clock()
            )
        except Invalid as exc:
            raise validation_problem(exc.errors, "The token request is not valid.") from exc
        resp.status = falcon.HTTP_201
        resp.data = json_bytes({**plain(event), "token": token})


@threaded
class TokenResource:
    AUTH = {"DELETE": Action.OPERATE}

    def __init__(self, deps: Dependencies) -> None:
        self._deps = deps

    def on_delete(self, req: falcon.Request, resp: falcon.Response, token_id: str) -> None:
        if TOKEN_ID.fullmatch(token_id) is None:
            raise Problem(404, "not-found", "Not Found", "No token has this id.")
        credentials = self._deps.credentials
        assert credentials is not None  # wired whenever the API runs
        revoked = credentials.revoke(
            token_id, revoked_by=principal_of(req).identity, now=self._deps.clock()
        )
        if revoked is None:
            raise Problem(404, "not-found", "Not Found", "No live token has this id.")
        self._deps.security.evict(token_id)  # the other workers hear of it by NOTIFY
        resp.data = json_bytes(plain(revoked))
