"""Verified credentials cached in memory, and forgotten as soon as a revocation is heard."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from commands.credentials import Credentials
from queries.credentials import CachedCredentials, RevocationListener, StoredCredential, find

NOW = datetime(2026, 5, 1, tzinfo=UTC)
LIVE = StoredCredential(
    identity="d", role="reader", devices=(), token_hash=bytes(32), revoked_at=None
)


class Lookups:
    """A stand-in for the database lookup that counts its calls."""

    def __init__(self, answer: StoredCredential | None = LIVE) -> None:
        self.answer, self.calls = answer, 0

    def __call__(self, token_id: str) -> StoredCredential | None:
        self.calls += 1
        return self.answer


def test_while_revocations_are_heard_a_verified_credential_is_looked_up_once() -> None:
    lookups = Lookups()
    cache = CachedCredentials(lookups)
    cache.trust(True)
    assert cache("aaaaaaaaaaaa") == cache("aaaaaaaaaaaa") == LIVE
    assert lookups.calls == 1
    cache.evict("aaaaaaaaaaaa")
    cache("aaaaaaaaaaaa")
    assert lookups.calls == 2


def test_without_a_listener_every_request_looks_its_credential_up() -> None:
    lookups = Lookups()
    cache = CachedCredentials(lookups)
    for _ in range(3):
        cache("aaaaaaaaaaaa")
    assert lookups.calls == 3
    cache.trust(True)
    cache("aaaaaaaaaaaa")
    cache.trust(False)  # the listener is lost: what it vouched for is forgotten
    cache("aaaaaaaaaaaa")
    assert lookups.calls == 5


def test_unknown_and_revoked_credentials_are_never_cached_and_entries_expire() -> None:
    now = [0.0]
    lookups = Lookups(None)
    cache = CachedCredentials(lookups, ttl=10, clock=lambda: now[0])
    cache.trust(True)
    cache("bbbbbbbbbbbb")
    cache("bbbbbbbbbbbb")
    assert lookups.calls == 2
    lookups.answer = StoredCredential(
        identity="d", role="reader", devices=(), token_hash=bytes(32), revoked_at=NOW
    )
    cache("bbbbbbbbbbbb")
    cache("bbbbbbbbbbbb")
    assert lookups.calls == 4
    lookups.answer = LIVE
    cache("cccccccccccc")
    now[0] = 9.0
    cache("cccccccccccc")
    now[0] = 10.5
    cache("cccccccccccc")
    assert lookups.calls == 6


def test_a_revocation_is_heard_and_the_cached_credential_forgotten(
    fresh_pool: ConnectionPool[Any], fresh_database_url: str
) -> None:
    credentials = Credentials(fresh_pool, b"key")
    event, _ = credentials.issue({"identity": "x", "role": "reader"}, issued_by="t", now=NOW)

    def lookup(token_id: str) -> StoredCredential | None:
        with fresh_pool.connection() as conn:
            return find(conn, token_id)

    cache = CachedCredentials(lookup)
    listener = RevocationListener(lambda: psycopg.connect(fresh_database_url), cache)
    try:
        deadline = time.monotonic() + 10
        while not cache._trusted:  # the listener has connected
            assert time.monotonic() < deadline
            time.sleep(0.01)
        first = cache(event.token_id)
        assert first is not None and first.revoked_at is None
        credentials.revoke(event.token_id, revoked_by="t", now=NOW)
        deadline = time.monotonic() + 5
        while (found := cache(event.token_id)) is not None and found.revoked_at is None:
            assert time.monotonic() < deadline, "the revocation was never heard"
            time.sleep(0.01)
    finally:
        listener.close()
