"""Errors as ``application/problem+json`` (RFC 9457), mapped centrally, never a bare 500."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import falcon
import falcon.asgi
import orjson

from commands.payloads import WireError
from eventstore import StoreUnavailable
from web.representation import plain

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


class Problem(Exception):
    """An answer that is an error. ``kind`` becomes the problem ``type`` (``/problems/<kind>``)."""

    def __init__(
        self,
        status: int,
        kind: str,
        title: str,
        detail: str,
        *,
        errors: Sequence[WireError] = (),
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"/problems/{self.kind}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = [{"field": e.field, "message": e.message} for e in self.errors]
        body.update(self.extra)
        return body


def validation_problem(
    errors: Sequence[WireError], detail: str = "The request is not valid."
) -> Problem:
    return Problem(422, "validation", "Unprocessable Content", detail, errors=errors)


def not_found(kind: str, device_id: str, consistency: object | None = None) -> Problem:
    """No such device: it never sent a reading and was never mapped."""
    extra = {"consistency": plain(consistency)} if consistency is not None else None  # as reads
    return Problem(
        404,
        "not-found",
        "Not Found",
        f"No {kind} {device_id!r} is known: it never sent a reading and was never mapped.",
        extra=extra,
    )


def _respond(resp: falcon.Response, problem: Problem) -> None:
    resp.status = problem.status
    resp.content_type = PROBLEM_JSON
    resp.data = orjson.dumps(problem.body())
    for name, value in problem.headers.items():
        resp.set_header(name, value)


async def handle_problem(
    req: falcon.Request, resp: falcon.Response, exc: Problem, params: Any
) -> None:
    _respond(resp, exc)


async def handle_unavailable(
    req: falcon.Request, resp: falcon.Response, exc: StoreUnavailable, params: Any
) -> None:
    log.warning("database unavailable: %s", exc)
    _respond(
        resp,
        Problem(
            503,
            "unavailable",
            "Service Unavailable",
            "The database is unavailable; nothing was stored. Retry later.",
            headers={"Retry-After": "1"},
        ),
    )


async def handle_http_error(
    req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError, params: Any
) -> None:
    kind = {404: "not-found", 405: "method-not-allowed", 415: "unsupported-media-type"}.get(
        exc.status_code, "http"
    )
    problem = Problem(
        exc.status_code,
        kind,
        exc.title or "Error",
        exc.description or exc.title or "",
        headers=dict(exc.headers or {}),
    )
    _respond(resp, problem)


async def handle_unexpected(
    req: falcon.Request, resp: falcon.Response, exc: Exception, params: Any
) -> None:
    # Anything reaching here is our bug, not the client's: log it whole, answer plainly.
    log.exception("unhandled error on %s %s", req.method, req.path)
    _respond(
        resp,
        Problem(500, "internal", "Internal Server Error", "An unexpected error occurred."),
    )


def register(app: falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response]) -> None:
    # Falcon picks the most specific handler for an exception's class.
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(StoreUnavailable, handle_unavailable)
    app.add_error_handler(Problem, handle_problem)
