"""Maps domain events (frozen attrs classes) to stored payloads and back, with schema versions.

Payload keys are camelCase, the names the API and auditors see. An event stored under an
older schema version is brought to the current one by the registered upcasters, one
version step at a time, before it is structured.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import attrs
from cattrs import Converter
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from eventstore.records import NewEvent, StoredEvent

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UnknownEventType(Exception):
    """A stored event whose type or version this codec cannot read."""


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _payload_converter(types: Mapping[type, tuple[str, int]]) -> Converter:
    converter = Converter()
    converter.register_unstructure_hook(datetime, datetime.isoformat)
    converter.register_structure_hook(datetime, lambda value, _: datetime.fromisoformat(value))
    converter.register_unstructure_hook(uuid.UUID, str)
    converter.register_structure_hook(uuid.UUID, lambda value, _: uuid.UUID(value))
    for cls in types:
        renames: dict[str, Any] = {
            a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)
        }
        converter.register_unstructure_hook(
            cls, make_dict_unstructure_fn(cls, converter, **renames)
        )
        converter.register_structure_hook(cls, make_dict_structure_fn(cls, converter, **renames))
    return converter


class Codec:
    """Encodes and decodes the event classes of one catalogue ``{class: (name, version)}``."""

    def __init__(
        self,
        types: Mapping[type, tuple[str, int]],
        upcasters: Mapping[tuple[str, int], Upcaster] | None = None,
    ) -> None:
        self._names = dict(types)
        self._classes = {name: (cls, version) for cls, (name, version) in types.items()}
        self._upcasters = dict(upcasters or {})
        self._converter = _payload_converter(types)
        # Each class's generated function, called directly: the converter's dispatch on
        # every call was half the cost of a payload.
        self._unstructure = {cls: self._converter.get_unstructure_hook(cls) for cls in types}

    def payload(self, event: object) -> dict[str, Any]:
        result: dict[str, Any] = self._unstructure[type(event)](event)
        return result

    def encode(
        self,
        event: object,
        *,
        event_id: uuid.UUID,
        stream_id: str,
        metadata: dict[str, Any],
        received_at: datetime,
    ) -> NewEvent:
        name, version = self._names[type(event)]
        return NewEvent(
            event_id=event_id,
            stream_id=stream_id,
            event_type=name,
            schema_version=version,
            payload=self.payload(event),
            metadata=metadata,
            received_at=received_at,
        )

    def decode(self, stored: StoredEvent) -> object:
        """The domain event of ``stored``, upcast to the current schema version."""
        try:
            cls, current = self._classes[stored.event_type]
        except KeyError:
            raise UnknownEventType(f"unknown event type {stored.event_type!r}") from None
        payload = self.upcast(stored.event_type, stored.schema_version, stored.payload)
        return self._converter.structure(payload, cls)

    def upcast(self, event_type: str, version: int, payload: dict[str, Any]) -> dict[str, Any]:
        """``payload`` of ``event_type`` stored at ``version``, brought to the current version."""
        try:
            _, current = self._classes[event_type]
        except KeyError:
            raise UnknownEventType(f"unknown event type {event_type!r}") from None
        stored_version = version
        while version < current:
            step = self._upcasters.get((event_type, version))
            if step is None:
                raise UnknownEventType(f"no upcaster for {event_type} v{version} -> v{version + 1}")
            payload, version = step(payload), version + 1
        if version != current:
            raise UnknownEventType(
                f"{event_type} v{stored_version} is newer than this code (v{current})"
            )
        return payload
