"""What the web layer is given to work with, and per-request context."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import falcon
from attrs import frozen

from commands.outcomes import Appender, Clock
from domain.rules import TimeRules

REQUEST_ID = "X-Request-Id"


@frozen(kw_only=True)
class Limits:
    max_body_bytes: int = 8 * 1024 * 1024
    max_batch_items: int = 10_000


@frozen(kw_only=True)
class Readiness:
    ready: bool
    detail: str
    pending_migrations: tuple[str, ...] = ()


@frozen(kw_only=True)
class Dependencies:
    store: Appender
    clock: Clock
    readiness: Callable[[], Readiness]
    rules: TimeRules = TimeRules()
    limits: Limits = Limits()


def request_metadata(req: falcon.Request) -> dict[str, Any]:
    """Metadata stored with every event of a request (the received time is stored apart)."""
    return {"requestId": req.context.request_id}


class RequestIdMiddleware:
    """Echo the caller's ``X-Request-Id`` (or a new one): a request traces to its events."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        given = req.get_header(REQUEST_ID)
        req.context.request_id = given[:128] if given else uuid.uuid4().hex

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        resp.set_header(REQUEST_ID, req.context.get("request_id", ""))
