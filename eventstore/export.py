"""The event log as auditors receive it: one JSON record per event (NDJSON) or CSV rows.

A record carries everything stored: the commit-safe place (``transactionId``, ``position``),
the event's identity, type and schema version, and its payload and metadata exactly as
stored (no upcasting: auditors see the facts as they were written).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from eventstore.records import StoredEvent

CSV_COLUMNS = (
    "position",
    "transactionId",
    "eventId",
    "streamId",
    "type",
    "schemaVersion",
    "receivedAt",
    "payload",
    "metadata",
)


def record(event: StoredEvent) -> dict[str, Any]:
    return {
        "position": event.position,
        "transactionId": event.transaction_id,
        "eventId": str(event.event_id),
        "streamId": event.stream_id,
        "type": event.event_type,
        "schemaVersion": event.schema_version,
        "receivedAt": event.received_at.isoformat(),
        "payload": event.payload,
        "metadata": event.metadata,
    }


def ndjson(events: Iterable[StoredEvent]) -> Iterator[bytes]:
    """One line of JSON per event."""
    for event in events:
        yield orjson.dumps(record(event)) + b"\n"


def csv_lines(events: Iterable[StoredEvent]) -> Iterator[str]:
    """A header, then one row per event; payload and metadata as JSON text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    for event in events:
        row = record(event)
        row["payload"] = orjson.dumps(row["payload"]).decode()
        row["metadata"] = orjson.dumps(row["metadata"]).decode()
        writer.writerow([row[column] for column in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
