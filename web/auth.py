"""Who may call what: bearer tokens checked on every request, roles, rate limits.

Each resource declares what each responder needs: ``AUTH = {"GET": Action.READ, ...}``;
a resource that declares ``AUTH = PUBLIC`` needs nothing, one that declares nothing is
refused (deny by default). Refusals are 401 (no, malformed, unknown or revoked token) or
403 (a role that may not, a device token writing for another device), problem bodies,
and each is recorded in ``auth_refusals``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import falcon

from domain.credentials import Action, Principal, Role, parse_token, token_hash
from queries.credentials import StoredCredential
from web.problems import Problem

log = logging.getLogger(__name__)

PUBLIC: dict[str, Action] = {}
ANONYMOUS = Principal(token_id="-", identity="anonymous (auth off)", role=Role.OPERATOR)
_DUMMY_HASH = bytes(32)
_OPEN = object()  # a request that needs no credential


class RateLimiter:
    """A token bucket per credential: ``rate`` requests per second, bursts of ``burst``.

    Thread-safe; one per process (each API worker process enforces its share of the rate).
    Idle buckets are dropped beyond ``keep`` credentials, least recently used first.
    """

    def __init__(self, rate: float, burst: float, keep: int = 100_000) -> None:
        self._rate, self._burst, self._keep = rate, burst, keep
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """0 when the request may go on, else the seconds until it may."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - last) * self._rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self._rate
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > self._keep:
                self._buckets.popitem(last=False)
            return wait


class Refusals:
    """Where refused requests are recorded (``Credentials.record_refusal`` in production)."""

    def __init__(self, record: Callable[..., None]) -> None:
        self._record = record

    def __call__(self, req: falcon.Request, status: int, reason: str, token_id: str | None) -> None:
        log.warning("refused %s %s: %s (token %s)", req.method, req.path, reason, token_id)
        try:
            self._record(
                token_id=token_id,
                method=req.method,
                path=req.path,
                status=status,
                reason=reason,
                remote=req.remote_addr,
            )
        except Exception:  # recording must never turn a 401 into a 500
            log.exception("could not record a refused request")


class AuthMiddleware:
    """Checks every request's token and role, and its credential's rate.

    On the event loop, a request whose credential is cached, valid and allowed is admitted
    at once; anything else (a lookup in the database, a refusal to record) is decided in a
    pool thread, so the loop never waits on the database.
    """

    def __init__(
        self,
        *,
        enabled: bool,
        key: bytes,
        lookup: Callable[[str], StoredCredential | None],
        refusals: Refusals,
        limiter: RateLimiter | None,
        public_prefixes: tuple[str, ...] = (),
        peek: Callable[[str], StoredCredential | None] = lambda token_id: None,
    ) -> None:
        self._enabled, self._key, self._lookup, self._peek = enabled, key, lookup, peek
        self._refusals, self._limiter = refusals, limiter
        self._public_prefixes = public_prefixes

    async def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: Any
    ) -> None:
        needed = self._needed(req, resource)
        if needed is _OPEN:
            return
        action = needed if isinstance(needed, Action) else None
        principal = self._admissible(req, action)
        if principal is None:
            await asyncio.to_thread(self._check, req, action)
            return
        self._admit(req, principal)

    def _needed(self, req: falcon.Request, resource: object) -> Action | object | None:
        """``_OPEN`` when the request needs nothing, else the action (``None``: none named,
        which no role may do)."""
        if resource is None:
            return _OPEN  # no such route: a 404 or 405 follows, nothing to protect
        needs: dict[str, Action] | None = getattr(resource, "AUTH", None)
        if needs is PUBLIC or req.path.startswith(self._public_prefixes):
            return _OPEN
        if not self._enabled:
            req.context.principal = ANONYMOUS
            return _OPEN
        return (needs or {}).get(req.method)

    def _admissible(self, req: falcon.Request, action: Action | None) -> Principal | None:
        """The principal when its credential is cached and it may do ``action``; ``None``
        when that takes the database or ends in a refusal."""
        parsed = _bearer(req)
        if parsed is None or action is None:
            return None
        token_id, secret = parsed
        stored = self._peek(token_id)
        if stored is None or stored.revoked_at is not None:
            return None
        if not hmac.compare_digest(token_hash(self._key, token_id, secret), stored.token_hash):
            return None
        principal = _principal(token_id, stored)
        return principal if principal.may(action) else None

    def _check(self, req: falcon.Request, action: Action | None) -> None:
        principal = self._authenticate(req)
        if action is None or not principal.may(action):
            what = action.value if action else f"{req.method} {req.path}"
            self._refuse(req, 403, f"role {principal.role.value} may not {what}", principal)
        self._admit(req, principal)

    def _admit(self, req: falcon.Request, principal: Principal) -> None:
        if self._limiter is not None and (wait := self._limiter.take(principal.token_id)):
            raise Problem(
                429,
                "rate-limited",
                "Too Many Requests",
                "This credential has sent more requests than its rate allows; slow down.",
                headers={"Retry-After": str(max(1, round(wait + 0.5)))},
            )
        req.context.principal = principal

    def _authenticate(self, req: falcon.Request) -> Principal:
        if req.get_header("Authorization") is None:
            self._refuse(req, 401, "no credentials")
        parsed = _bearer(req)
        if parsed is None:
            self._refuse(req, 401, "malformed credentials")
        assert parsed is not None
        token_id, secret = parsed
        stored = self._lookup(token_id)
        expected = stored.token_hash if stored else _DUMMY_HASH
        # Computed and compared whether or not the id exists: the answer takes as long.
        if not hmac.compare_digest(token_hash(self._key, token_id, secret), expected):
            self._refuse(req, 401, "unknown credentials", token_id)
        assert stored is not None
        if stored.revoked_at is not None:
            self._refuse(req, 401, "revoked credentials", token_id)
        return _principal(token_id, stored)

    def _refuse(
        self,
        req: falcon.Request,
        status: int,
        reason: str,
        who: Principal | str | None = None,
    ) -> None:
        token_id = who.token_id if isinstance(who, Principal) else who
        self._refusals(req, status, reason, token_id)
        if status == 401:
            raise Problem(
                401,
                "unauthorized",
                "Unauthorized",
                f"This needs a valid bearer token ({reason}).",
                headers={"WWW-Authenticate": 'Bearer realm="energy"'},
            )
        raise Problem(403, "forbidden", "Forbidden", f"Not allowed: {reason}.")


def _bearer(req: falcon.Request) -> tuple[str, str] | None:
    """``(token id, secret)`` of the request's bearer token, ``None`` when it has none."""
    scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
    return parse_token(token.strip()) if scheme.lower() == "bearer" else None


def _principal(token_id: str, stored: StoredCredential) -> Principal:
    return Principal(
        token_id=token_id,
        identity=stored.identity,
        role=Role(stored.role),
        devices=frozenset(stored.devices),
    )


def principal_of(req: falcon.Request) -> Principal:
    """The principal the auth middleware put on the request."""
    principal: Principal = req.context.principal
    return principal


async def refuse_devices(req: falcon.Request, devices: set[str], refusals: Refusals) -> None:
    """403 (nothing stored) unless the principal may write for every one of ``devices``."""
    principal = principal_of(req)
    foreign = sorted(d for d in devices if not principal.may_write_for(d))
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        reason = f"this token may not write for {shown}"
        await asyncio.to_thread(refusals, req, 403, reason, principal.token_id)
        raise Problem(403, "forbidden", "Forbidden", f"Not allowed: {reason}; nothing was stored.")
