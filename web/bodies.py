"""Reading request bodies: size limit, media type, JSON and NDJSON parsing."""

from __future__ import annotations

from collections.abc import Iterable

import falcon
import falcon.asgi
import orjson

from web.problems import Problem

JSON = "application/json"
NDJSON = "application/x-ndjson"  # what NDJSON answers are sent as
NDJSON_TYPES = frozenset({NDJSON, "application/ndjson", "application/jsonl"})


class Malformed:
    """One NDJSON line that is not JSON; it is rejected alone, the other lines still count."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def media_type(req: falcon.Request, accepted: Iterable[str]) -> str:
    """The request's media type, or a 415 problem when it is not one of ``accepted``."""
    content_type = (req.content_type or "").split(";", 1)[0].strip().lower()
    allowed = sorted(accepted)
    if content_type not in allowed:
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported Media Type",
            f"Content-Type must be one of {', '.join(allowed)}"
            + (f", not {content_type}." if content_type else "; none was given."),
        )
    return content_type


async def read_body(req: falcon.asgi.Request, limit: int) -> bytes:
    """The whole body, refusing with 413 anything over ``limit`` bytes before reading it all."""
    if req.content_length is not None and req.content_length > limit:
        raise _too_large(limit)
    data = await req.stream.read(limit + 1)
    if len(data) > limit:
        raise _too_large(limit)
    return data


async def json_body(req: falcon.asgi.Request, *, max_bytes: int, max_depth: int) -> object:
    """The request's JSON body: 415 for another media type, 413 beyond ``max_bytes``, 400
    when it is not JSON, 422 when it nests deeper than ``max_depth``."""
    media_type(req, {JSON})
    return parse_json(await read_body(req, max_bytes), max_depth)


def _too_large(limit: int) -> Problem:
    return Problem(
        413, "too-large", "Content Too Large", f"The body is larger than the {limit} byte limit."
    )


MAX_DEPTH = 8  # a batch of readings is 2 levels deep; anything far deeper is not one


def depth(value: object) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar is 0)."""
    if type(value) is list and value and _flat_objects(value):
        return 2  # a batch of flat readings, told in one pass without a work list
    deepest, pending = 0, [(value, 1)]
    while pending:
        current, level = pending.pop()
        if type(current) is dict:
            children: Iterable[object] = current.values()
        elif type(current) is list:
            children = current
        else:
            continue
        deepest = max(deepest, level)
        # Only containers are visited: a batch of flat readings costs one pass over them.
        pending.extend((child, level + 1) for child in children if type(child) in (dict, list))
    return deepest


def _flat_objects(items: list[object]) -> bool:
    """Whether every item is an object whose values are all scalars."""
    return all(type(item) is dict for item in items) and not any(
        type(child) is dict or type(child) is list
        for item in items
        for child in item.values()  # type: ignore[attr-defined]
    )


def parse_json(data: bytes, max_depth: int = MAX_DEPTH) -> object:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise Problem(
            400, "malformed", "Bad Request", f"The body is not valid JSON: {exc}"
        ) from exc
    if depth(value) > max_depth:
        raise Problem(
            422,
            "too-deep",
            "Unprocessable Content",
            f"The body nests arrays and objects more than {max_depth} levels deep.",
        )
    return value


def parse_ndjson(data: bytes, max_depth: int = MAX_DEPTH) -> list[object]:
    """One value per non-blank line; a line that is not JSON (or nests too deeply) becomes
    a ``Malformed`` item, rejected alone."""
    items: list[object] = []
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            items.append(Malformed(f"not valid JSON: {exc}"))
            continue
        if depth(value) > max_depth:
            items.append(Malformed(f"nests more than {max_depth} levels deep"))
        else:
            items.append(value)
    return items
