"""The benchmark scripts, run through their CLIs with tiny sizes so that they never rot.

Only behaviour is asserted (nothing acknowledged is lost or doubled, the figures agree with
the database, seeded rows are what the API stores), never timings.
"""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from click.testing import CliRunner
from psycopg_pool import ConnectionPool

from bench import harness, loadgen, run, seed
from bench.fleet import Fleet
from commands.ingest import ingest
from commands.mapping import create_mapping
from commands.outcomes import Status
from domain.rules import TimeRules
from eventstore import EventStore
from tests.databases import Databases

READINGS_BY_TYPE = """
SELECT event_type, count(*) FROM events GROUP BY event_type
"""
PAYLOADS = "SELECT event_id, event_type, payload FROM events ORDER BY position"


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute(READINGS_BY_TYPE).fetchall())


def invoke(command: Any, *args: str) -> str:
    outcome = CliRunner().invoke(command, list(args), catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output
    return outcome.output


def test_the_standard_run_stores_every_acknowledged_reading_once(
    databases: Databases, tmp_path: Path
) -> None:
    url = databases.create()
    invoke(run.cli, "--smoke", "--database-url", url, "--workers", "1", "--out", str(tmp_path))

    result = json.loads((tmp_path / "latest.json").read_text())
    assert list(result["steps"]) == [step.name for step in run.STEPS]
    health = result["steps"]["health-64"]
    assert health["statuses"] == {"200": health["requests"]} and health["requests"] > 0
    writes = [figures for figures in result["steps"].values() if figures.get("verify")]
    assert len(writes) == 3
    for figures in [health, *writes]:
        # CPU of the timed phase only, per request, for the three parties.
        assert set(figures["cpu_ms_per_request"]) == {"server", "database", "client"}
        assert all(ms >= 0 for ms in figures["cpu_ms_per_request"].values())
        assert "probed" not in figures
        # One worker: all of the workers' CPU is its own (none when the clock did not tick).
        assert figures["worker_cpu_shares"] in ([1.0], [])
    for figures in writes:
        assert figures["verify"]["lost"] == 0 and figures["verify"]["doubled"] == 0
        assert figures["errors"] == {}
        assert figures["accepted_twice"] == 0 and figures["duplicate_mismatches"] == 0
        sent, items = figures["sent"], figures["items"]
        assert items.get("accepted", 0) == sent.get("fresh", 0) + sent.get("late", 0) > 0
        assert items.get("duplicate", 0) == sent.get("duplicate", 0)
        assert sum(sent.values()) == figures["readings"]
        pairs = min(figures["config"]["meters"], figures["config"]["vehicles"])
        assert figures["mappings"] == {"accepted": pairs}
        assert figures["verify"]["checked"] == items["accepted"] + pairs

    caught = result["steps"]["catch-up"]
    assert caught["events"] == sum(counts(url).values()) and caught["events_per_s"] > 0
    for name in ("analytics-1", "analytics-8"):
        figures = result["steps"][name]
        assert figures["requests"] > 0 and figures["statuses"] == {"200": figures["requests"]}
    assert result["server"]["auth"] is True  # the steps sent a real token

    stored = counts(url)
    accepted = sum(figures["items"]["accepted"] for figures in writes)
    readings = stored["MeterReadingRecorded"] + stored["VehicleReadingRecorded"]
    assert readings == accepted + result["seed"]["readings"]  # the seeded history too
    assert result["events_by_type"] == stored
    table = (tmp_path / "latest.md").read_text()
    assert all(f"| {name} |" in table for name in result["steps"] if name != "catch-up")
    assert "- catch-up (" in table


def test_ndjson_batches_are_verified_against_the_database(
    databases: Databases, tmp_path: Path
) -> None:
    url = databases.create()
    out = tmp_path / "ndjson.json"
    with harness.server(url, workers=1) as running:
        invoke(
            loadgen.cli,
            *("--url", running.url, "--mode", "batch", "--ndjson", "--batch-size", "50"),
            *("--meters", "3", "--vehicles", "2", "--readings", "400", "--duplicates", "0.1"),
            *("--late", "0.2", "--verify-dsn", url, "--json", str(out)),
        )
    result = json.loads(out.read_text())
    assert result["readings"] == 400 and result["requests"] == 8
    assert result["verify"] == {"checked": result["items"]["accepted"] + 2, "lost": 0, "doubled": 0}
    assert result["sent"]["late"] > 0
    stored = counts(url)
    assert (
        stored["MeterReadingRecorded"] + stored["VehicleReadingRecorded"]
        == (result["items"]["accepted"])
    )


def test_seeded_events_are_exactly_what_the_api_would_store(databases: Databases) -> None:
    url = databases.create()
    output = invoke(
        seed.cli,
        *("--dsn", url, "--meters", "3", "--vehicles", "2", "--days", "0.25"),
        *("--interval-seconds", "900", "--end", "2026-01-02T00:00:00Z", "--jobs", "2"),
    )
    ticks = 6 * 3600 // 900
    assert output.startswith(f"{2 + 5 * ticks} events (2 mappings")
    assert counts(url) == {
        "VehicleMeterMapped": 2,
        "MeterReadingRecorded": 3 * ticks,
        "VehicleReadingRecorded": 2 * ticks,
    }

    # Sent again through the ingest and mapping commands, every seeded event is a duplicate
    # of itself: same id, same payload.
    with ConnectionPool(url, min_size=1, max_size=2, open=True) as pool:
        with pool.connection() as conn:
            rows = conn.execute(PAYLOADS).fetchall()
        store, clock = EventStore(pool), lambda: datetime.now(UTC)
        readings = [(event_id, payload) for event_id, kind, payload in rows if "Reading" in kind]
        outcomes = ingest(
            [payload for _, payload in readings],
            store=store,
            clock=clock,
            rules=TimeRules(),
            metadata={},
        )
        assert [(o.status, o.event_id) for o in outcomes] == [
            (Status.DUPLICATE, event_id) for event_id, _ in readings
        ]
        for event_id, kind, payload in rows:
            if kind == "VehicleMeterMapped":
                outcome, _ = create_mapping(
                    payload, store=store, clock=clock, rules=TimeRules(), metadata={}
                )
                assert (outcome.status, outcome.event_id) == (Status.DUPLICATE, event_id)


def test_worker_shares_are_each_workers_part_of_their_cpu_in_the_step_largest_first() -> None:
    before = {"server": 5.0, "database": 1.0, "worker 11": 2.0, "worker 12": 1.0}
    after = {"server": 9.0, "database": 3.0, "worker 11": 3.0, "worker 12": 4.0}
    assert run.worker_shares(before, after) == [0.75, 0.25]
    assert run.worker_shares(after, after) == []


def test_the_load_generator_gives_its_collector_back_as_it_found_it() -> None:
    before = gc.get_threshold()
    with loadgen.quiet_collector():
        assert gc.get_threshold() == loadgen.COLLECTOR_THRESHOLDS
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_answers_read_after_the_timed_phase_still_check_each_duplicate_in_order() -> None:
    fleet = Fleet(meters=1, vehicles=0, prefix="t-")
    workload = loadgen.Workload(fleet, start=1_700_000_000, end=1_700_000_600, duplicates=0, late=0)
    stats = loadgen.Stats()
    first, second = workload.next(), workload.next()
    assert first is not None and second is not None

    def answer(*items: tuple[str, str]) -> bytes:
        body = [{"index": i, "status": s, "eventId": e} for i, (s, e) in enumerate(items)]
        return orjson.dumps({"items": body})

    sent = loadgen.Job("POST", "/v1/ingest", readings=[first, second])
    stats.record(sent, 202, answer(("accepted", "id-1"), ("accepted", "id-2")), workload)
    assert stats.items == {} and stats.unread  # kept, not read yet
    assert first.pooled and second.pooled  # but both may be sent again at once
    again = loadgen.Job("POST", "/v1/ingest", readings=[first, second])
    stats.record(again, 202, answer(("duplicate", "id-1"), ("duplicate", "id-other")), workload)
    stats.read_answers()
    assert stats.items == {"accepted": 2, "duplicate": 2}
    assert stats.duplicate_mismatches == 1  # the second came back under another id
    assert stats.acked == {"id-1", "id-2", "id-other"} and not stats.unread


def test_kept_answers_are_read_at_once_past_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = Fleet(meters=1, vehicles=0, prefix="t-")
    workload = loadgen.Workload(fleet, start=1_700_000_000, end=1_700_000_600, duplicates=0, late=0)
    stats = loadgen.Stats()
    answer = orjson.dumps({"items": [{"index": 0, "status": "accepted", "eventId": "id-1"}]})
    monkeypatch.setattr(loadgen, "UNREAD_BYTES", len(answer) * 2)

    def send() -> None:
        reading = workload.next()
        assert reading is not None
        stats.record(loadgen.Job("POST", "/v1/ingest", readings=[reading]), 202, answer, workload)

    send()
    send()
    assert len(stats.unread) == 2 and stats.items == {}  # within the bound: kept
    send()
    assert stats.unread == [] and stats.unread_bytes == 0  # past it: all read, in order
    assert stats.items == {"accepted": 3}
