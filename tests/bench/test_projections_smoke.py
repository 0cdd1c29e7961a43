"""The projection benchmark, run through its CLI with ``--smoke`` sizes so that it never rots.

Only behaviour is asserted (every seeded event projected, every query answered, every probe
seen in ``vehicle_live``, the result files complete), never timings.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bench import projections
from projections.catalogue import NAMES
from tests.databases import Databases


def test_the_smoke_run_projects_everything_and_answers_every_query(
    databases: Databases, tmp_path: Path
) -> None:
    outcome = CliRunner().invoke(
        projections.cli,
        ["--smoke", "--admin-dsn", databases.admin, "--out", str(tmp_path)],
        catch_exceptions=False,
    )
    assert outcome.exit_code == 0, outcome.output

    result = json.loads((tmp_path / "projections.json").read_text())
    assert set(result) == {"started_at", "host", "modified_files", "config", "sizes", "lag"}
    smoke = projections.SMOKE
    assert [size["readings_per_device"] for size in result["sizes"]] == list(smoke.readings)
    meters = smoke.devices // 2
    vehicles = smoke.devices - meters
    for size in result["sizes"]:
        readings = size["readings_per_device"]
        seeded, caught, queried = size["seed"], size["catch_up"], size["query"]
        assert seeded["events"] == vehicles + smoke.devices * readings
        assert caught["events"] == seeded["events"]
        assert caught["completed"] and caught["finish"] is None
        assert set(caught["projections"]) == set(NAMES)  # the read models and the ledger
        assert size["read_models"] == {
            "meter_live": meters,
            "vehicle_live": vehicles,
            "meter_history": meters * readings,
            "vehicle_history": vehicles * readings,
            "vehicle_meter_map": vehicles,
            "meter_hourly_readings": meters * readings,
            "vehicle_hourly_readings": vehicles * readings,
        }
        assert queried["queries"] == queried["answered"] == smoke.queries
        assert queried["null"] == 0 and queried["above_1"] == 0
        assert queried["vehicle_readings_per_answer"] == {"min": readings, "max": readings}
        assert set(queried["latency_ms"]) == {"p50", "p95", "p99", "max"}

    lag = result["lag"]
    assert lag["probes"] == lag["seen"] == smoke.probes
    assert lag["unseen"] == 0 and lag["errors"] == {}
    assert set(lag["lag_ms"]) == {"p50", "p95", "p99", "max"}
    background = lag["background"]
    assert background["errors"] == {} and background["requests"] > 0
    assert background["verify"]["lost"] == 0 and background["verify"]["doubled"] == 0

    table = (tmp_path / "projections.md").read_text()
    assert "| step | size | events | figure(s) |" in table
    assert table.count("| efficiency query, 24 h |") == len(smoke.readings)
    assert "| projector lag, POST 202 to vehicle_live |" in table
