"""The read side's connections: a pool (on a replica where one is configured), each
connection in autocommit, driver failures translated into ``StoreUnavailable``; and its
asynchronous counterpart, for reads answered on the event loop itself."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

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


class AsyncReadPool:
    """``ReadPool`` for coroutines. Opened in the event loop that uses it (``open``, at the
    API worker's startup) and closed there (``close``)."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        with translated_errors():
            async with self._pool.connection() as conn:
                await conn.set_autocommit(True)
                yield conn
