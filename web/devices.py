"""Live state: ``GET /v1/vehicles[/{vehicleId}]`` and ``GET /v1/meters[/{meterId}]``.

Lists hold the devices that have reported, by id, a page at a time (keyset cursors), and
filter on staleness (``staleMinutes``) and, for vehicles, on the last 24 hours' efficiency
as of the latest fleet refresh (``efficiencyBelow``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import falcon
import psycopg

from domain.credentials import Action
from domain.rules import DEVICE_ID
from queries import meter_live, vehicle_live
from queries.checkpoints import Consistency
from web.consistency import PARAMETER, await_position, requested_position, with_consistency
from web.context import Dependencies
from web.offload import threaded
from web.params import Params, check_device_id, encode_cursor
from web.problems import not_found
from web.representation import json_bytes, plain

MAX_STALE_MINUTES = 10_000_000


def page_body(
    items: Sequence[Any], limit: int, next_cursor: dict[str, Any], consistency: Consistency | None
) -> bytes:
    """A page of ``items`` (fetched one beyond ``limit``, to know whether more follow)."""
    body: dict[str, Any] = {
        "items": plain(list(items[:limit])),
        "nextCursor": encode_cursor(next_cursor) if len(items) > limit else None,
    }
    return json_bytes(with_consistency(body, consistency))


def after_id(params: Params) -> str:
    """The device id a list resumes after ('' for the first page)."""
    cursor = params.cursor()
    if cursor is None:
        return ""
    after = cursor.get("after")
    if not isinstance(after, str) or DEVICE_ID.fullmatch(after) is None:
        params.refuse("cursor", "is not a cursor this API handed out")
        return ""
    return after


class DeviceResource:
    """One device's live state; ``kind`` names it in errors, ``find`` looks it up (and
    ``find_async`` over an asynchronous connection). Answered on the event loop when the
    app has asynchronous read connections, as the analytics are; in a pool thread
    otherwise and whenever the read waits for a position."""

    AUTH = {"GET": Action.READ}

    def __init__(
        self,
        deps: Dependencies,
        *,
        kind: str,
        find: Callable[[psycopg.Connection[Any], str, datetime], object | None],
        find_async: Callable[[psycopg.AsyncConnection[Any], str, datetime], Awaitable[object]],
        reads: Sequence[str],
    ) -> None:
        self._deps, self._kind, self._reads = deps, kind, reads
        self._find, self._find_async = find, find_async

    async def respond(self, req: falcon.Request, resp: falcon.Response, device_id: str) -> None:
        deps = self._deps
        check_device_id(f"{self._kind}Id", device_id)
        params = Params(req, (PARAMETER,))
        position = requested_position(req, params)
        params.done()
        if deps.async_reads is None or position is not None:
            consistency, state = await asyncio.to_thread(self._read, device_id, position)
        else:
            consistency = None
            async with deps.async_reads.connection() as conn:
                state = await self._find_async(conn, device_id, deps.clock())
        if state is None:
            raise not_found(self._kind, device_id, consistency)
        resp.data = json_bytes(with_consistency(plain(state), consistency))

    def _read(self, device_id: str, position: int | None) -> tuple[Consistency | None, object]:
        deps = self._deps
        consistency = await_position(deps.reads, self._reads, position, deps.read.max_wait)
        with deps.reads.connection() as conn:
            return consistency, self._find(conn, device_id, deps.clock())


class VehicleResource(DeviceResource):
    def __init__(self, deps: Dependencies) -> None:
        super().__init__(
            deps,
            kind="vehicle",
            find=vehicle_live.find,
            find_async=vehicle_live.find_async,
            reads=vehicle_live.READS,
        )

    async def on_get(self, req: falcon.Request, resp: falcon.Response, vehicle_id: str) -> None:
        await self.respond(req, resp, vehicle_id)


class MeterResource(DeviceResource):
    def __init__(self, deps: Dependencies) -> None:
        super().__init__(
            deps,
            kind="meter",
            find=meter_live.find,
            find_async=meter_live.find_async,
            reads=meter_live.READS,
        )

    async def on_get(self, req: falcon.Request, resp: falcon.Response, meter_id: str) -> None:
        await self.respond(req, resp, meter_id)


@threaded
class DeviceListResource:
    """A list of devices by id. ``page`` takes the keyset and filter keywords, ``key`` is an
    item's id; ``filters`` reads the list's own extra parameters as keywords for ``page``."""

    AUTH = {"GET": Action.READ}

    def __init__(
        self,
        deps: Dependencies,
        *,
        page: Callable[..., Sequence[Any]],
        key: Callable[[Any], str],
        reads: Sequence[str],
        filters: Callable[[Params], dict[str, Any]] = lambda params: {},
        extra: Sequence[str] = (),
    ) -> None:
        self._deps, self._page, self._key = deps, page, key
        self._reads, self._filters = reads, filters
        self._allowed = ("limit", "cursor", "staleMinutes", PARAMETER, *extra)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        deps = self._deps
        params = Params(req, self._allowed)
        limit = params.integer(
            "limit", low=1, high=deps.read.max_page, default=deps.read.default_page
        )
        after = after_id(params)
        stale = params.integer("staleMinutes", low=1, high=MAX_STALE_MINUTES)
        filters = self._filters(params)
        position = requested_position(req, params)
        params.done()
        assert limit is not None  # it has a default
        now = deps.clock()
        consistency = await_position(deps.reads, self._reads, position, deps.read.max_wait)
        with deps.reads.connection() as conn:
            items = self._page(
                conn,
                now=now,
                after=after,
                limit=limit + 1,
                stale_before=None if stale is None else now - timedelta(minutes=stale),
                **filters,
            )
        last = self._key(items[limit - 1]) if len(items) > limit else ""
        resp.data = page_body(items, limit, {"after": last}, consistency)


def vehicles(deps: Dependencies) -> DeviceListResource:
    return DeviceListResource(
        deps,
        page=vehicle_live.page,
        key=lambda state: state.vehicle_id,
        reads=vehicle_live.READS,
        filters=lambda params: {
            "efficiency_below": params.number("efficiencyBelow", low=0.0, high=1000.0)
        },
        extra=("efficiencyBelow",),
    )


def meters(deps: Dependencies) -> DeviceListResource:
    return DeviceListResource(
        deps, page=meter_live.page, key=lambda state: state.meter_id, reads=meter_live.READS
    )
