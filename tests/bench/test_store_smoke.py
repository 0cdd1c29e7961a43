"""The store benchmark, run through its CLI with tiny sizes (behaviour only, never timings)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bench import store
from tests.databases import Databases


def test_the_store_smoke_run_appends_every_batch_once_per_session_count(
    databases: Databases, tmp_path: Path
) -> None:
    outcome = CliRunner().invoke(
        store.cli,
        [
            *("--admin-dsn", databases.admin, "--batches", "6", "--batch-size", "25"),
            *("--sessions", "1,2", "--devices", "8", "--out", str(tmp_path)),
        ],
        catch_exceptions=False,
    )
    assert outcome.exit_code == 0, outcome.output
    result = json.loads((tmp_path / "store.json").read_text())
    assert [run["sessions"] for run in result["runs"]] == [1, 2]
    for run in result["runs"]:
        # Each run has a fresh database: every event appended and stored exactly once.
        assert run["events"] == run["appended"] == run["stored"] == 6 * 25
        assert set(run["cpu_us_per_event"]) == {"database", "python"}
    assert "| 2 | 150 |" in (tmp_path / "store.md").read_text()


def test_the_batches_are_the_readings_the_api_would_store() -> None:
    batches = store.reading_batches(3, 10, devices=4)
    events = [event for batch in batches for event in batch]
    assert len({event.event_id for event in events}) == 30  # a minute apart per device
    assert {event.event_type for event in events} == {
        "MeterReadingRecorded",
        "VehicleReadingRecorded",
    }
    assert {event.stream_id for event in events} == {
        *(f"meter-bench-store-M{i:05d}" for i in range(2)),
        *(f"vehicle-bench-store-V{i:05d}" for i in range(2)),
    }
