"""The credentials a request presents, looked up by public token id; and token listings."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
from attrs import frozen
from psycopg.rows import tuple_row

FIND = """
SELECT identity, role, devices, token_hash, revoked_at FROM credentials
WHERE token_id = %(token_id)s
"""
log = logging.getLogger(__name__)

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


# Revocations are notified here, the payload the revoked token's id (commands.credentials).
LISTEN = "LISTEN energy_credentials"


class CachedCredentials:
    """Verified credentials kept in memory, so a request costs no lookup, and evicted the
    moment a revocation is notified (``evict``, from ``RevocationListener``).

    Only while the listener is connected (``trust(True)``) are cached entries used: with no
    way to hear of a revocation, every request looks its credential up again. Entries also
    expire after ``ttl`` seconds, and at most ``keep`` are kept (unknown ids never are).
    """

    def __init__(
        self,
        lookup: Callable[[str], StoredCredential | None],
        *,
        ttl: float = 60.0,
        keep: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup, self._ttl, self._keep, self._clock = lookup, ttl, keep, clock
        self._entries: dict[str, tuple[StoredCredential, float]] = {}
        self._lock = threading.Lock()
        self._trusted = False

    def __call__(self, token_id: str) -> StoredCredential | None:
        if (held := self.cached(token_id)) is not None:
            return held
        now = self._clock()
        found = self._lookup(token_id)
        with self._lock:
            if found is not None and found.revoked_at is None and self._trusted:
                if len(self._entries) >= self._keep:
                    self._entries.clear()
                self._entries[token_id] = (found, now)
        return found

    def cached(self, token_id: str) -> StoredCredential | None:
        """The credential if it is held and fresh now, without a lookup (else ``None``)."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(token_id) if self._trusted else None
        return entry[0] if entry is not None and now - entry[1] < self._ttl else None

    def evict(self, token_id: str) -> None:
        with self._lock:
            self._entries.pop(token_id, None)

    def trust(self, listening: bool) -> None:
        """Whether revocations are being heard; forgets everything either way."""
        with self._lock:
            self._trusted = listening
            self._entries.clear()


class RevocationListener:
    """A thread that LISTENs for revoked token ids and evicts them from ``cache``."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], cache: CachedCredentials):
        self._connect, self._cache = connect, cache
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="revocations", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    conn.autocommit = True
                    conn.execute(LISTEN)
                    self._cache.trust(True)
                    while not self._stop.is_set():
                        for notice in conn.notifies(timeout=1.0):
                            self._cache.evict(notice.payload)
            except psycopg.Error as exc:
                log.warning("revocation listener lost (%s): credentials looked up each time", exc)
            self._cache.trust(False)
            self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
