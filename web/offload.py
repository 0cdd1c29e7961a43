"""Blocking work off the event loop.

The API is a Falcon ASGI app: one event loop per worker process serves every connection,
and the ingest path never leaves it (its appends await the group commit). Reads and the
rarer writes run the project's blocking code (psycopg connections from a pool, the query
modules) in the loop's thread pool, so a slow query holds one thread, never the loop.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
RESPONDERS = ("on_get", "on_post", "on_put", "on_patch", "on_delete")


def threaded(cls: type[T]) -> type[T]:
    """``cls`` with each of its plain (not ``async``) responders run in the thread pool.

    The responder is written as it would be for WSGI; what it may not do is read the body
    (an ASGI body is read by awaiting: do that in an ``async`` responder).
    """
    for name in RESPONDERS:
        plain = cls.__dict__.get(name)
        if plain is None or inspect.iscoroutinefunction(plain):
            continue
        setattr(cls, name, _in_thread(plain))
    return cls


def _in_thread(plain: Callable[..., None]) -> Callable[..., Any]:
    @functools.wraps(plain)
    async def responder(*args: Any, **kwargs: Any) -> None:
        await asyncio.to_thread(plain, *args, **kwargs)

    return responder
