"""Issuing and revoking tokens: each a row in ``credentials`` and an event in the log,
written in one transaction; and recording refused requests."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from psycopg_pool import ConnectionPool

from commands.ingest import CODEC
from commands.payloads import Invalid, structure, wire_errors
from domain.credentials import (
    IssueToken,
    TokenIssued,
    TokenRevoked,
    issue_token,
    token_hash,
)
from domain.readings import EVENT_NAMESPACE
from domain.rules import Rejected
from eventstore.store import append_events, translated_errors

# Serialises the token changes of one identity, so two at once cannot both find room.
LOCK_IDENTITY = "SELECT pg_advisory_xact_lock(hashtext('energy-identity:' || %(identity)s))"
LIVE = "SELECT count(*) FROM credentials WHERE identity = %(identity)s AND revoked_at IS NULL"
INSERT = """
INSERT INTO credentials (token_id, identity, role, devices, token_hash, created_at, created_by)
VALUES (%(token_id)s, %(identity)s, %(role)s, %(devices)s, %(token_hash)s, %(at)s, %(by)s)
"""
REVOKE = """
UPDATE credentials SET revoked_at = %(at)s
WHERE token_id = %(token_id)s AND revoked_at IS NULL
RETURNING identity
"""
# Every API worker hears of a revocation and forgets the credential (queries.credentials).
NOTIFY_REVOKED = "SELECT pg_notify('energy_credentials', %(token_id)s)"
REFUSAL = """
INSERT INTO auth_refusals (token_id, method, path, status, reason, remote)
VALUES (%(token_id)s, %(method)s, %(path)s, %(status)s, %(reason)s, %(remote)s)
"""


class Credentials:
    """The credentials table and the log, written together through one pool."""

    def __init__(
        self, pool: ConnectionPool[Any], key: bytes, random_hex: Callable[[], str] | None = None
    ) -> None:
        self._pool, self._key = pool, key
        self._random_hex = random_hex or (lambda: secrets.token_hex(38))

    def issue(self, body: object, *, issued_by: str, now: datetime) -> tuple[TokenIssued, str]:
        """Store a new token; the event and the token (shown once, never stored)."""
        command = structure(body, IssueToken)
        with translated_errors(), self._pool.connection() as conn, conn.transaction():
            conn.execute(LOCK_IDENTITY, {"identity": command.identity})
            row = conn.execute(LIVE, {"identity": command.identity}).fetchone()
            try:
                event, token = issue_token(
                    command,
                    random_hex=self._random_hex(),
                    live_tokens=int(row[0]) if row else 0,
                    issued_by=issued_by,
                    now=now,
                )
            except Rejected as exc:
                raise Invalid(wire_errors(exc.errors)) from exc
            secret = token.rsplit("_", 1)[1]
            conn.execute(
                INSERT,
                {
                    "token_id": event.token_id,
                    "identity": event.identity,
                    "role": event.role,
                    "devices": list(event.devices),
                    "token_hash": token_hash(self._key, event.token_id, secret),
                    "at": now,
                    "by": issued_by,
                },
            )
            append_events(conn, [_encode(event, f"token-issued/{event.token_id}", now)])
        return event, token

    def revoke(self, token_id: str, *, revoked_by: str, now: datetime) -> TokenRevoked | None:
        """Revoke a live token at once; ``None`` when no live token has that id."""
        with translated_errors(), self._pool.connection() as conn, conn.transaction():
            row = conn.execute(REVOKE, {"token_id": token_id, "at": now}).fetchone()
            if row is None:
                return None
            event = TokenRevoked(token_id=token_id, revoked_by=revoked_by, revoked_at=now)
            append_events(conn, [_encode(event, f"token-revoked/{token_id}", now)])
            conn.execute(NOTIFY_REVOKED, {"token_id": token_id})  # delivered on commit
        return event

    def record_refusal(
        self,
        *,
        token_id: str | None,
        method: str,
        path: str,
        status: int,
        reason: str,
        remote: str | None,
    ) -> None:
        with translated_errors(), self._pool.connection() as conn:
            conn.execute(
                REFUSAL,
                {
                    "token_id": token_id,
                    "method": method,
                    "path": path[:512],
                    "status": status,
                    "reason": reason,
                    "remote": remote,
                },
            )


def _encode(event: TokenIssued | TokenRevoked, key: str, now: datetime) -> Any:
    return CODEC.encode(
        event,
        event_id=uuid.uuid5(EVENT_NAMESPACE, key),
        stream_id=f"token-{event.token_id}",
        metadata={},
        received_at=now,
    )
