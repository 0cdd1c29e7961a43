"""``GET /v1/events``: the event log for auditors, in commit-safe order, as NDJSON.

The answer streams from a server-side cursor, so memory stays bounded whatever the size
of the log; each line is one event as stored (see ``eventstore.export``). To resume, pass
the last line's ``transactionId:position`` as ``after``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Generator, Iterator

import falcon.asgi

from domain.credentials import Action
from domain.events import device_streams
from eventstore import START, Checkpoint, Selection
from eventstore.export import ndjson
from eventstore.store import iter_events
from queries.pool import ReadPool
from web.bodies import NDJSON
from web.context import Dependencies
from web.params import Params, check_device_id

MAX_LIMIT = 100_000_000
CHUNK_LINES = 1000  # lines read per trip to the pool thread (a few hundred kB)


def _listed(params: Params, name: str) -> tuple[str, ...] | None:
    """A comma-separated parameter as a tuple (``None`` when not given)."""
    raw = params.text(name)
    if raw is None:
        return None
    items = tuple(item for item in raw.split(",") if item)
    if not items:
        params.refuse(name, "must name at least one value")
    return items


def _stream(reads: ReadPool, selection: Selection) -> Generator[bytes, None, None]:
    with reads.connection() as conn:
        yield from ndjson(iter_events(conn, selection))


def _some(lines: Iterator[bytes], count: int = CHUNK_LINES) -> bytes:
    return b"".join(itertools.islice(lines, count))


async def _chunks(first: bytes, lines: Generator[bytes, None, None]) -> AsyncIterator[bytes]:
    """The lines as the client takes them, read from the database in a pool thread a chunk
    at a time; a client that leaves early closes the cursor and frees its connection."""
    try:
        chunk = first
        while chunk:
            yield chunk
            chunk = await asyncio.to_thread(_some, lines)
    finally:
        await asyncio.to_thread(lines.close)


class EventsResource:
    AUTH = {"GET": Action.AUDIT}

    ALLOWED = ("after", "stream", "device", "type", "from", "to", "limit")

    def __init__(self, deps: Dependencies) -> None:
        self._deps = deps

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        selection = self._selection(req)
        lines = _stream(self._deps.reads, selection)
        # The first line is read here, so that a database failure is a 503 problem, not a
        # broken stream; the rest follows as the client reads.
        first = await asyncio.to_thread(_some, lines, 1)
        resp.content_type = NDJSON
        resp.stream = _chunks(first, lines)

    def _selection(self, req: falcon.asgi.Request) -> Selection:
        params = Params(req, self.ALLOWED)
        after = START
        if (token := params.text("after")) is not None:
            try:
                after = Checkpoint.parse(token)
            except ValueError as exc:
                params.refuse("after", str(exc))
        streams = list(_listed(params, "stream") or ())
        for device in _listed(params, "device") or ():
            check_device_id("device", device)
            streams += device_streams(device)
        selection = Selection(
            after=after,
            streams=tuple(streams) or None,
            event_types=_listed(params, "type"),
            received_from=params.moment("from"),
            received_to=params.moment("to"),
            limit=params.integer("limit", low=1, high=MAX_LIMIT),
        )
        params.done()
        return selection
