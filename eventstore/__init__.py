"""An append-only event store on PostgreSQL: append, read in commit-safe order, codec.

This package knows nothing of the energy domain; it stores typed, versioned JSON facts.
"""

from eventstore.codec import Codec, UnknownEventType
from eventstore.records import (
    START,
    Appended,
    AppendStatus,
    Checkpoint,
    NewEvent,
    Selection,
    StoredEvent,
)
from eventstore.store import EventStore, StoreUnavailable

__all__ = [
    "START",
    "Appended",
    "AppendStatus",
    "Checkpoint",
    "Codec",
    "EventStore",
    "NewEvent",
    "Selection",
    "StoreUnavailable",
    "StoredEvent",
    "UnknownEventType",
]
