"""Events stored by an older release (schema version 1) are read, projected and compared
as the current version: the log is never rewritten, payloads are upcast when read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from commands.ingest import CODEC, ingest
from commands.outcomes import Status
from domain.readings import VehicleReadingRecorded, reading_event_id, reading_stream
from domain.rules import TimeRules
from eventstore import EventStore, NewEvent
from eventstore.store import append_events
from tests.ids import fresh_id
from tests.projection_runs import project_through

NOW = datetime(2026, 4, 1, tzinfo=UTC)
HISTORY = "SELECT kwh_delivered_dc, charger_id FROM vehicle_history WHERE vehicle_id = %(id)s"


def test_a_reading_stored_at_version_1_replays_projects_and_deduplicates_as_version_2(
    pool: ConnectionPool[Any], database_url: str
) -> None:
    vehicle, at = fresh_id("V"), NOW - timedelta(hours=1)
    body = {
        "vehicleId": vehicle,
        "soc": 55.0,
        "kwhDeliveredDc": 4.5,
        "batteryTemp": 27.0,
        "timestamp": at.isoformat(),
    }
    reading = VehicleReadingRecorded(
        vehicle_id=vehicle, soc=55.0, kwh_delivered_dc=4.5, battery_temp=27.0, timestamp=at
    )
    # What release 1 wrote: no chargerId, schema version 1.
    v1_payload = {key: value for key, value in CODEC.payload(reading).items() if key != "chargerId"}
    with psycopg.connect(database_url) as conn:
        [stored] = append_events(
            conn,
            [
                NewEvent(
                    event_id=reading_event_id(reading),
                    stream_id=reading_stream(reading),
                    event_type="VehicleReadingRecorded",
                    schema_version=1,
                    payload=v1_payload,
                    metadata={},
                    received_at=at,
                )
            ],
        )

    [event] = EventStore(pool).read_stream(reading_stream(reading))
    assert event.schema_version == 1 and "chargerId" not in event.payload
    assert CODEC.decode(event) == reading  # read as version 2, charger_id None

    def resend(store: EventStore, **change: Any) -> Status:
        [outcome] = ingest(
            [{**body, **change}], store=store, clock=lambda: NOW, rules=TimeRules(), metadata={}
        )
        assert outcome.event_id == stored.event_id
        return outcome.status

    upcasting = EventStore(pool, upcast=CODEC.upcast)
    assert resend(upcasting) is Status.DUPLICATE  # the same reading, in either version
    assert resend(upcasting, chargerId="EVSE-1") is Status.CONFLICT  # a different reading
    assert resend(EventStore(pool)) is Status.CONFLICT  # why the store must upcast first

    with psycopg.connect(database_url, autocommit=True) as conn:
        project_through(conn, stored.position)
        assert conn.execute(HISTORY, {"id": vehicle}).fetchall() == [(4.5, None)]
