"""The auditors' and engineers' commands, run as a user runs them (``python -m main``)."""

from __future__ import annotations

import csv
import io
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from projections.catalogue import with_ledger
from projections.runtime import catch_up, ensure_checkpoints
from tests.databases import Databases
from tests.projection_runs import project_through, write_log

ROOT = Path(__file__).resolve().parents[2]
KEY = "an operator's ledger key"


def energy(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url, "ENERGY_LEDGER_KEY": KEY}
    return subprocess.run(
        [sys.executable, "-m", "main", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def audited(databases: Databases) -> str:
    """A mixed log, every projection and the ledger caught up."""
    url = databases.create()
    write_log(url, random.Random(11))
    ledger = with_ledger(KEY.encode(), every=500)["ledger"]
    with psycopg.connect(url, autocommit=True) as conn:
        [(head,)] = conn.execute("SELECT max(position) FROM events").fetchall()
        project_through(conn, head)
        ensure_checkpoints(conn, [ledger])
        catch_up(conn, ledger, 2000)
    return url


def stored(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT position, event_id::text, stream_id, event_type, payload FROM events"
            " ORDER BY transaction_id, position"
        ).fetchall()


def test_export_writes_every_event_as_ndjson_and_csv(audited: str, tmp_path: Path) -> None:
    expected = stored(audited)
    done = energy(audited, "events", "export", "--out", str(tmp_path / "log.ndjson"))
    assert done.returncode == 0, done.stderr
    assert f"exported {len(expected)} events" in done.stderr
    lines = [orjson.loads(line) for line in (tmp_path / "log.ndjson").read_text().splitlines()]
    assert [
        (e["position"], e["eventId"], e["streamId"], e["type"], e["payload"]) for e in lines
    ] == [(p, i, s, t, payload) for p, i, s, t, payload in expected]

    done = energy(audited, "events", "export", "--format", "csv", "--device", "V3")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    mine = [e for e in expected if e[2] in ("vehicle-V3", "vehicle-V3-mappings")]
    assert [int(r["position"]) for r in rows] == [e[0] for e in mine] and rows
    assert [orjson.loads(r["payload"]) for r in rows] == [e[4] for e in mine]


def test_export_resumes_after_a_place_and_refuses_a_bad_one(audited: str) -> None:
    first = energy(audited, "events", "export", "--limit", "10")
    lines = [orjson.loads(line) for line in first.stdout.splitlines()]
    assert len(lines) == 10
    after = f"{lines[4]['transactionId']}:{lines[4]['position']}"
    rest = energy(audited, "events", "export", "--limit", "5", "--after", after)
    assert [orjson.loads(line) for line in rest.stdout.splitlines()] == lines[5:]
    bad = energy(audited, "events", "export", "--after", "soon")
    assert bad.returncode == 2 and "--after" in bad.stderr


def test_verify_says_ok_then_names_the_position_of_a_tampered_event(
    databases: Databases, audited: str, tmp_path: Path
) -> None:
    done = energy(audited, "events", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    events = len(stored(audited))
    assert done.stdout.startswith(f"OK: {events} events read, {events} chained by the ledger")

    kept = tmp_path / "checkpoints.ndjson"
    assert energy(audited, "ledger", "export", "--out", str(kept)).returncode == 0
    assert len(kept.read_text().splitlines()) >= events // 500
    copy = databases.clone(audited)
    target = stored(copy)[777][0]
    with psycopg.connect(copy, autocommit=True) as conn:
        conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        conn.execute(
            "UPDATE events SET payload = payload || '{\"voltage\": 1}' WHERE position = %s",
            [target],
        )
    done = energy(copy, "events", "verify", "--checkpoints", str(kept))
    assert done.returncode == 1
    assert done.stdout.startswith(f"MISMATCH (content) at position {target} (event #778)")

    no_key = subprocess.run(
        [sys.executable, "-m", "main", "events", "verify"],
        cwd=ROOT,
        env={
            k: v
            for k, v in {**os.environ, "DATABASE_URL": copy}.items()
            if k != "ENERGY_LEDGER_KEY"
        },
        capture_output=True,
        text=True,
    )
    assert no_key.returncode == 2 and "ENERGY_LEDGER_KEY" in no_key.stderr


def test_status_lists_every_projection_with_its_state(audited: str) -> None:
    done = energy(audited, "projections", "status")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for name in ("ledger", "meter_live", "vehicle_hourly", "vehicle_meter_map"):
        [line] = [line for line in lines if line.startswith(name + " ")]
        assert " caught up " in line and " 0 events / " in line
    assert lines[-1] == "projector sessions attached: 0"
    assert energy(audited, "projections", "status", "--check").returncode == 1
