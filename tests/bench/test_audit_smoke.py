"""The audit benchmark, run through its CLI with tiny sizes (behaviour only, never timings)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bench import audit
from projections.catalogue import NAMES
from tests.databases import Databases


def test_the_audit_smoke_run_verifies_and_rebuilds_every_projection(
    databases: Databases, tmp_path: Path
) -> None:
    outcome = CliRunner().invoke(
        audit.cli,
        [
            *("--admin-dsn", databases.admin, "--devices", "6", "--readings", "40"),
            *("--batch-size", "30", "--out", str(tmp_path)),
        ],
        catch_exceptions=False,
    )
    assert outcome.exit_code == 0, outcome.output
    result = json.loads((tmp_path / "audit.json").read_text())
    events = result["events"]
    assert events == 6 * 40 + 3  # the readings and one mapping per pair
    assert result["ledger"]["events"] == events
    assert result["verify"] == {**result["verify"], "ok": True, "events": events, "chained": events}
    assert set(result["rebuild_each"]) == set(NAMES)
    assert all(f["switched"] and f["events"] == events for f in result["rebuild_each"].values())
    together = result["rebuild_all"]
    assert together["all_switched"] and set(together["projections"]) == set(NAMES)
    assert "events verify (ok: True)" in (tmp_path / "audit.md").read_text()
