"""Crash safety: projector processes killed with SIGKILL at random points of a catch-up,
sometimes two at once on the same projections, then restarted, end with read models
identical to a clean run over the same log. Nothing applied twice, nothing skipped."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from projections.catalogue import ALL
from queries.projection_status import projector_sessions, statuses
from tests.databases import Databases
from tests.projection_runs import dump, project_through, wait_caught_up, write_log

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINTS = "SELECT name, transaction_id::text, position FROM projection_checkpoints ORDER BY 1"
HEAD = "SELECT max(position) FROM events"
READINGS = "SELECT count(*) FROM events WHERE event_type LIKE '%%ReadingRecorded'"
ROLLED_UP = """
SELECT (SELECT sum(readings) FROM meter_hourly) + (SELECT sum(readings) FROM vehicle_hourly)
"""


def start_projector(url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "ENERGY_PROJECTOR_BATCH_SIZE": "50",
        "ENERGY_LOG_LEVEL": "warning",
    }
    return subprocess.Popen([sys.executable, "-m", "main", "project"], cwd=ROOT, env=env)


def progress(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """(events applied summed over the projections, events still to apply)."""
    rows = statuses(conn, [p.name for p in ALL])
    return sum(r.checkpoint.position for r in rows), sum(r.behind for r in rows)


def test_killing_projectors_at_random_points_leaves_the_read_models_of_a_clean_run(
    databases: Databases,
) -> None:
    rng = random.Random(20261204)
    url = databases.create()
    write_log(url, rng)
    clean_url = databases.clone(url)

    interrupted = 0
    with psycopg.connect(url, autocommit=True) as conn:
        for round_ in range(6):
            before, _ = progress(conn)
            # Every other round two processes race for the same projections.
            processes = [start_projector(url) for _ in range(1 + round_ % 2)]
            deadline = time.monotonic() + 30
            while progress(conn)[0] == before and progress(conn)[1] > 0:
                assert time.monotonic() < deadline, "the projector made no progress"
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.06))
            for process in processes:
                process.kill()
            for process in processes:
                process.wait()
            interrupted += progress(conn)[1] > 0
        last = start_projector(url)
        try:
            deadline = time.monotonic() + 30
            while projector_sessions(conn) == 0:  # started, handlers installed
                assert time.monotonic() < deadline, "the last projector never attached"
                time.sleep(0.01)
            wait_caught_up(conn)
        finally:
            last.terminate()
            assert last.wait(timeout=30) == 0
        killed = dump(conn)
        killed_checkpoints = conn.execute(CHECKPOINTS).fetchall()
        [(readings,)] = conn.execute(READINGS).fetchall()
        [(rolled_up,)] = conn.execute(ROLLED_UP).fetchall()

    with psycopg.connect(clean_url, autocommit=True) as conn:
        [(head,)] = conn.execute(HEAD).fetchall()
        project_through(conn, head)
        clean = dump(conn)
        clean_checkpoints = conn.execute(CHECKPOINTS).fetchall()

    assert interrupted >= 4, "the kills should land in the middle of the catch-up"
    assert rolled_up == readings  # every reading counted once in the rollups
    assert killed_checkpoints == clean_checkpoints
    for name in clean:
        assert killed[name] == clean[name], name
    assert len(clean["meter_history"]) + len(clean["vehicle_history"]) == readings
