"""``POST /v1/ingest``: one reading, a JSON array of readings, or NDJSON."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import falcon
import falcon.asgi
import orjson

from commands.ingest import decide
from commands.outcomes import Outcome, Status
from commands.payloads import WireError
from domain.credentials import Action
from web.auth import Refusals, refuse_devices
from web.bodies import (
    JSON,
    NDJSON_TYPES,
    Malformed,
    media_type,
    parse_json,
    parse_ndjson,
    read_body,
)
from web.context import Dependencies, request_metadata
from web.problems import Problem, validation_problem

_ACCEPTED = {JSON, *NDJSON_TYPES}
# Up to this many readings are judged on the event loop (about 20 µs each); more go to a
# pool thread.
INLINE_ITEMS = 50


def devices_named(items: list[object]) -> set[str]:
    """Every device id the items name (whether or not the items are otherwise valid)."""
    named = set()
    for item in items:
        if isinstance(item, dict):
            for key in ("meterId", "vehicleId"):
                if isinstance(item.get(key), str):
                    named.add(item[key])
    return named


def outcome_body(outcome: Outcome, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The answer for one item, added to ``body`` (a batch item's ``{"index": i}``)."""
    if body is None:
        body = {}
    body["status"] = outcome.status.value
    if outcome.event_id is not None:
        body["eventId"] = outcome.event_id  # orjson writes a UUID in its canonical form
        body["position"] = outcome.position
    if outcome.errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in outcome.errors]
    return body


def single_answer(outcome: Outcome, resp: falcon.Response, what: str) -> None:
    """202 for a stored or duplicate item; the matching problem otherwise."""
    if outcome.status is Status.REJECTED:
        raise validation_problem(outcome.errors, f"The {what} is not valid; nothing was stored.")
    if outcome.status is Status.CONFLICT:
        raise Problem(
            409,
            "conflict",
            "Conflict",
            f"A different {what} is already stored for this device and timestamp; "
            "the first one stands.",
            extra={"eventId": str(outcome.event_id), "position": outcome.position},
        )
    resp.status = falcon.HTTP_202
    resp.data = orjson.dumps(outcome_body(outcome))


class IngestResource:
    """On the event loop throughout for small requests: a single reading is parsed, judged
    and awaited in the group commit without a thread hand-off (the hot path); a large batch
    is judged in a pool thread, so that its milliseconds of validation do not stall the
    loop's other requests, and then awaited in the group commit too."""

    AUTH = {"POST": Action.INGEST}

    def __init__(self, deps: Dependencies, refusals: Refusals) -> None:
        self._deps, self._refusals = deps, refusals

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        kind = media_type(req, _ACCEPTED)
        data = await read_body(req, self._deps.limits.max_body_bytes)
        if kind in NDJSON_TYPES:
            items = parse_ndjson(data, self._deps.security.max_json_depth)
            await self._batch(req, resp, items)
            return
        body = parse_json(data, self._deps.security.max_json_depth)
        if isinstance(body, list):
            await self._batch(req, resp, body)
            return
        [outcome] = await self._ingest(req, [body])
        single_answer(outcome, resp, "reading")

    async def _ingest(self, req: falcon.asgi.Request, items: list[object]) -> list[Outcome]:
        deps = self._deps
        # A device token writes for its own devices only: one foreign id and nothing of the
        # request is stored (before anything is decided, let alone appended).
        await refuse_devices(req, devices_named(items), self._refusals)
        judge = functools.partial(
            decide, items, clock=deps.clock, rules=deps.rules, metadata=request_metadata(req)
        )
        decided = await asyncio.to_thread(judge) if len(items) > INLINE_ITEMS else judge()
        # Awaited on the loop either way: no thread is held while the batch commits.
        return decided.settle(
            await deps.store.append_async(decided.events) if decided.events else []
        )

    async def _batch(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, items: list[object]
    ) -> None:
        limit = self._deps.limits.max_batch_items
        if len(items) > limit:
            raise Problem(
                413,
                "too-many-items",
                "Content Too Large",
                f"The batch holds {len(items)} readings; at most {limit} are accepted per request.",
            )
        if not items:
            raise validation_problem(
                [WireError(field="", message="must hold at least one reading")],
                "The batch is empty.",
            )
        slots: list[Outcome | None] = [
            Outcome.rejected([WireError(field="", message=item.message)])
            if isinstance(item, Malformed)
            else None
            for item in items
        ]
        parsed = [i for i, slot in enumerate(slots) if slot is None]
        for index, outcome in zip(
            parsed, await self._ingest(req, [items[i] for i in parsed]), strict=True
        ):
            slots[index] = outcome
        outcomes = [slot for slot in slots if slot is not None]
        counts = dict.fromkeys(Status, 0)
        for outcome in outcomes:
            counts[outcome.status] += 1
        positions = [o.position for o in outcomes if o.position is not None]
        resp.status = (
            falcon.HTTP_202
            if counts[Status.REJECTED] == 0 and counts[Status.CONFLICT] == 0
            else falcon.HTTP_207
        )
        resp.data = orjson.dumps(
            {
                "accepted": counts[Status.ACCEPTED],
                "duplicates": counts[Status.DUPLICATE],
                "conflicts": counts[Status.CONFLICT],
                "rejected": counts[Status.REJECTED],
                "position": max(positions, default=None),
                "items": [outcome_body(o, {"index": i}) for i, o in enumerate(outcomes)],
            }
        )
