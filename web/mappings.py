"""``POST /v1/mappings``: which meter feeds which vehicle, from ``effectiveFrom`` on."""

from __future__ import annotations

import asyncio

import falcon.asgi

from commands.mapping import create_mapping
from domain.credentials import Action
from web.context import Dependencies, request_json, request_metadata
from web.ingest import single_answer


class MappingsResource:
    AUTH = {"POST": Action.MAP}

    def __init__(self, deps: Dependencies) -> None:
        self._deps = deps

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        body = await request_json(req, self._deps)
        await asyncio.to_thread(self._post, req, resp, body)

    def _post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, body: object) -> None:
        outcome, _ = create_mapping(
            body,
            store=self._deps.store,
            clock=self._deps.clock,
            rules=self._deps.rules,
            metadata=request_metadata(req),
        )
        single_answer(outcome, resp, "mapping")
