"""The read side's connections: a pool (on a replica where one is configured), each
connection in autocommit, driver failures translated into ``StoreUnavailable``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from eventstore.store import translated_errors


class ReadPool:
    """Hands out connections for read-side queries; every query is its own transaction."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self._pool = pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with translated_errors(), self._pool.connection() as conn:
            conn.autocommit = True
            yield conn
