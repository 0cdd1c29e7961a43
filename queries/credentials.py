"""The credentials a request presents, looked up by public token id; and token listings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from attrs import frozen
from psycopg.rows import tuple_row

FIND = """
SELECT identity, role, devices, token_hash, revoked_at FROM credentials
WHERE token_id = %(token_id)s
"""
LIST = """
SELECT token_id, identity, role, devices, created_at, created_by, revoked_at FROM credentials
WHERE %(all)s OR revoked_at IS NULL
ORDER BY identity, created_at
"""


@frozen(kw_only=True)
class StoredCredential:
    identity: str
    role: str
    devices: tuple[str, ...]
    token_hash: bytes
    revoked_at: datetime | None


@frozen(kw_only=True)
class TokenInfo:
    """A token as operators see it: never its secret, nor its hash."""

    token_id: str
    identity: str
    role: str
    devices: tuple[str, ...]
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


def find(conn: psycopg.Connection[Any], token_id: str) -> StoredCredential | None:
    row = conn.cursor(row_factory=tuple_row).execute(FIND, {"token_id": token_id}).fetchone()
    if row is None:
        return None
    identity, role, devices, digest, revoked_at = row
    return StoredCredential(
        identity=identity,
        role=role,
        devices=tuple(devices),
        token_hash=bytes(digest),
        revoked_at=revoked_at,
    )


def tokens(conn: psycopg.Connection[Any], *, include_revoked: bool = False) -> list[TokenInfo]:
    rows = conn.cursor(row_factory=tuple_row).execute(LIST, {"all": include_revoked}).fetchall()
    return [
        TokenInfo(
            token_id=token_id,
            identity=identity,
            role=role,
            devices=tuple(devices),
            created_at=created_at,
            created_by=created_by,
            revoked_at=revoked_at,
        )
        for token_id, identity, role, devices, created_at, created_by, revoked_at in rows
    ]
