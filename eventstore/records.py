"""The store's own value types: events going in, events coming out, checkpoints."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from attrs import frozen


@frozen(kw_only=True, order=True)
class Checkpoint:
    """A place in commit-safe order: everything at or before it has been read."""

    transaction_id: int
    position: int

    def token(self) -> str:
        """``transaction_id:position``, the form a reader passes back to resume after it."""
        return f"{self.transaction_id}:{self.position}"

    @classmethod
    def parse(cls, token: str) -> Checkpoint:
        """The checkpoint ``token`` names; ``ValueError`` when it names none."""
        transaction_id, sep, position = token.partition(":")
        if not sep or not transaction_id.isdigit() or not position.isdigit():
            raise ValueError("must be transactionId:position, e.g. 742:1001")
        parsed = cls(transaction_id=int(transaction_id), position=int(position))
        if parsed.transaction_id >= 2**63 or parsed.position >= 2**63:
            raise ValueError("is out of range")
        return parsed


START = Checkpoint(transaction_id=0, position=0)


@frozen(kw_only=True)
class NewEvent:
    event_id: uuid.UUID
    stream_id: str
    event_type: str
    schema_version: int
    payload: dict[str, Any]
    metadata: dict[str, Any]
    received_at: datetime


@frozen(kw_only=True)
class StoredEvent:
    position: int
    transaction_id: int
    event_id: uuid.UUID
    stream_id: str
    event_type: str
    schema_version: int
    payload: dict[str, Any]
    metadata: dict[str, Any]
    received_at: datetime

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(transaction_id=self.transaction_id, position=self.position)


class AppendStatus(enum.Enum):
    APPENDED = "appended"
    DUPLICATE = "duplicate"  # same id, same payload: already stored, nothing written
    CONFLICT = "conflict"  # same id, different payload: the stored one stands


@frozen(kw_only=True)
class Appended:
    """What became of one event handed to ``append``; ``position`` is the stored event's."""

    event_id: uuid.UUID
    position: int
    status: AppendStatus


@frozen(kw_only=True)
class Selection:
    """Which events a log read takes: after ``after`` in commit-safe order, optionally only
    some streams, some event types, and received in ``[received_from, received_to)``."""

    after: Checkpoint = START
    streams: tuple[str, ...] | None = None
    event_types: tuple[str, ...] | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None
    limit: int | None = None
