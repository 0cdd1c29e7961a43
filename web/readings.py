"""History: ``GET /v1/vehicles/{vehicleId}/readings`` and ``GET /v1/meters/{meterId}/readings``.

Readings in ``(from, to]`` (default: the last 24 hours), newest first, a page at a time;
the cursor carries the reading time the next page resumes before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import falcon
import psycopg

from domain.credentials import Action
from domain.efficiency import DEFAULT_WINDOW, Window
from queries import meter_history, meter_live, vehicle_history, vehicle_live
from web.consistency import PARAMETER, await_position, requested_position
from web.context import Dependencies
from web.devices import page_body
from web.offload import threaded
from web.params import Params, check_device_id, read_window
from web.problems import not_found

ALLOWED = ("from", "to", "limit", "cursor", PARAMETER)


def resume_before(params: Params, window: Window) -> datetime:
    """The reading time a page resumes strictly before (just after the window's end on the
    first page)."""
    _, first = window.half_open()
    cursor = params.cursor()
    if cursor is None:
        return first
    try:
        before = datetime.fromisoformat(cursor["before"])
    except (KeyError, TypeError, ValueError):
        before = None
    if before is None or before.tzinfo is None:
        params.refuse("cursor", "is not a cursor this API handed out")
        return first
    return before


class ReadingsResource:
    """One device kind's history; its lookups come in as collaborators."""

    AUTH = {"GET": Action.READ}

    def __init__(
        self,
        deps: Dependencies,
        *,
        kind: str,
        find: Callable[[psycopg.Connection[Any], str, datetime], object | None],
        page: Callable[..., Sequence[Any]],
        reads: Sequence[str],
    ) -> None:
        self._deps, self._kind = deps, kind
        self._find, self._page, self._reads = find, page, reads

    def respond(self, req: falcon.Request, resp: falcon.Response, device_id: str) -> None:
        deps = self._deps
        check_device_id(f"{self._kind}Id", device_id)
        params = Params(req, ALLOWED)
        window = read_window(
            params,
            now=deps.clock(),
            default=DEFAULT_WINDOW,
            max_span=deps.read.max_span,
            with_duration=False,
        )
        limit = params.integer(
            "limit", low=1, high=deps.read.max_page, default=deps.read.default_page
        )
        before = resume_before(params, window)
        position = requested_position(req, params)
        params.done()
        assert limit is not None  # it has a default
        consistency = await_position(deps.reads, self._reads, position, deps.read.max_wait)
        with deps.reads.connection() as conn:
            if self._find(conn, device_id, window.end) is None:
                raise not_found(self._kind, device_id, consistency)
            items = self._page(
                conn,
                device_id,
                start=window.start,
                end=window.end,
                before=before,
                limit=limit + 1,
            )
        last = items[limit - 1].recorded_at.isoformat() if len(items) > limit else ""
        resp.data = page_body(items, limit, {"before": last}, consistency)


@threaded
class VehicleReadingsResource(ReadingsResource):
    def __init__(self, deps: Dependencies) -> None:
        super().__init__(
            deps,
            kind="vehicle",
            find=vehicle_live.find,
            page=vehicle_history.page,
            reads=(*vehicle_history.READS, *vehicle_live.READS),
        )

    def on_get(self, req: falcon.Request, resp: falcon.Response, vehicle_id: str) -> None:
        self.respond(req, resp, vehicle_id)


@threaded
class MeterReadingsResource(ReadingsResource):
    def __init__(self, deps: Dependencies) -> None:
        super().__init__(
            deps,
            kind="meter",
            find=meter_live.find,
            page=meter_history.page,
            reads=(*meter_history.READS, *meter_live.READS),
        )

    def on_get(self, req: falcon.Request, resp: falcon.Response, meter_id: str) -> None:
        self.respond(req, resp, meter_id)
