"""The read benchmark, run through its CLI with tiny sizes (behaviour only, never timings)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bench import reads
from tests.databases import Databases


def test_the_reads_smoke_run_answers_every_request_with_a_200(
    databases: Databases, tmp_path: Path
) -> None:
    outcome = CliRunner().invoke(
        reads.cli,
        [
            *("--admin-dsn", databases.admin, "--devices", "6", "--readings", "90"),
            *("--seconds", "0.3", "--workers", "1", "--out", str(tmp_path)),
        ],
        catch_exceptions=False,
    )
    assert outcome.exit_code == 0, outcome.output
    result = json.loads((tmp_path / "reads.json").read_text())
    assert result["vehicles"] == 3
    assert set(result["steps"]) == {
        f"{name}-{clients}" for name in ("analytics", "vehicle", "fleet") for clients in (1, 8)
    }
    for figures in result["steps"].values():
        assert figures["requests"] > 0 and figures["statuses"] == {"200": figures["requests"]}
    assert "| analytics | 8 |" in (tmp_path / "reads.md").read_text()
