"""What the web layer is given to work with, and per-request context."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import falcon
import falcon.asgi
from attrs import frozen

from commands.credentials import Credentials
from commands.outcomes import Appender, Clock
from domain.efficiency import DEFAULT_LOW_THRESHOLD
from domain.rules import TimeRules
from queries.credentials import StoredCredential
from queries.pool import AsyncReadPool, ReadPool
from web.bodies import MAX_DEPTH, json_body

REQUEST_ID = "X-Request-Id"


@frozen(kw_only=True)
class Limits:
    max_body_bytes: int = 8 * 1024 * 1024
    max_batch_items: int = 10_000


@frozen(kw_only=True)
class ReadSettings:
    """Bounds and defaults of the read API (each a setting, see the README)."""

    max_span: timedelta = timedelta(days=31)  # longest time range one read may ask for
    default_page: int = 100
    max_page: int = 1000
    max_wait: float = 2.0  # seconds a read waits for its minimum position
    low_threshold: float = DEFAULT_LOW_THRESHOLD  # efficiency below this is flagged
    stale_after: timedelta = timedelta(minutes=15)  # a device silent longer is stale
    lowest: int = 10  # vehicles listed in the fleet summary's lowest efficiency


@frozen(kw_only=True)
class Security:
    """Authentication and the limits that come with it (see web/auth.py)."""

    enabled: bool = False
    key: bytes = b""  # the server's token key: tokens are stored as HMACs under it
    lookup: Callable[[str], StoredCredential | None] = lambda token_id: None
    # The credential if it is at hand without the database (a cache); ``None`` sends the
    # request to a pool thread, where ``lookup`` may block.
    peek: Callable[[str], StoredCredential | None] = lambda token_id: None
    evict: Callable[[str], None] = lambda token_id: None  # forget a revoked token at once
    record_refusal: Callable[..., None] = lambda **refusal: None
    rate: float = 0.0  # requests per second per credential in this process (0: no limit)
    burst: float = 0.0
    max_json_depth: int = MAX_DEPTH


@frozen(kw_only=True)
class Readiness:
    ready: bool
    detail: str
    pending_migrations: tuple[str, ...] = ()


@frozen(kw_only=True)
class Dependencies:
    store: Appender
    reads: ReadPool
    clock: Clock
    readiness: Callable[[], Readiness]
    rules: TimeRules = TimeRules()
    limits: Limits = Limits()
    read: ReadSettings = ReadSettings()
    projections: tuple[str, ...] = ()  # the projections this deployment runs, by name
    security: Security = Security()
    credentials: Credentials | None = None  # token management
    # Where configured, the hottest reads (analytics) are answered on the event loop over
    # these connections instead of in a pool thread.
    async_reads: AsyncReadPool | None = None


async def request_json(req: falcon.asgi.Request, deps: Dependencies) -> object:
    """The request's JSON body, held to the deployment's body size and nesting limits (see
    ``web.bodies.json_body``)."""
    return await json_body(
        req, max_bytes=deps.limits.max_body_bytes, max_depth=deps.security.max_json_depth
    )


def request_metadata(req: falcon.Request) -> dict[str, Any]:
    """Metadata stored with every event of a request (the received time is stored apart):
    the request id and the credential (its public token id) it came with."""
    principal = req.context.get("principal")
    return {
        "requestId": req.context.request_id,
        "credentialId": principal.token_id if principal is not None else None,
    }


class RequestIdMiddleware:
    """Echo the caller's ``X-Request-Id`` (or a new one): a request traces to its events."""

    async def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        given = req.get_header(REQUEST_ID)
        req.context.request_id = given[:128] if given else uuid.uuid4().hex

    async def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        resp.set_header(REQUEST_ID, str(req.context.get("request_id", "")))
