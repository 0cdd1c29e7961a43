"""Rebuilding a projection without downtime: readers keep their answers during the rebuild,
the result equals the projection built the first time, two rebuilds are identical, and an
interrupted rebuild (even by SIGKILL) resumes where it stopped."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from domain.efficiency import Window
from projections.catalogue import ALL, BY_NAME
from projections.rebuild import RebuildBusy, rebuild, schema_of
from projections.runtime import Projector
from queries.efficiency import vehicle_efficiency
from tests.databases import Databases
from tests.projection_runs import LOG_NOW, dump, project_through, write_log

ROOT = Path(__file__).resolve().parents[2]
HEAD = "SELECT max(position) FROM events"
INDEXES = "SELECT indexname FROM pg_indexes WHERE tablename = %(table)s ORDER BY 1"
OPTIONS = "SELECT reloptions FROM pg_class WHERE oid = %(table)s::regclass"
STARTED = "SELECT position > 0 FROM projection_checkpoints WHERE name = 'meter_history@rebuild'"
SCHEMAS = (
    "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'rebuild%%' OR nspname LIKE 'retired%%'"
)


@pytest.fixture(scope="module")
def built(databases: Databases) -> str:
    """A log of 12,000 readings and 16 remappings, every projection caught up."""
    url = databases.create()
    write_log(url, random.Random(5))
    with psycopg.connect(url, autocommit=True) as conn:
        [(head,)] = conn.execute(HEAD).fetchall()
        project_through(conn, head)
    return url


def answers(conn: psycopg.Connection[Any]) -> list[Any]:
    """What a dashboard reads: every vehicle's efficiency over a few windows."""
    found = []
    for n in range(15):
        for hours in (3, 30, 80):
            window = Window.ending(LOG_NOW - timedelta(days=2), timedelta(hours=hours))
            found.append(vehicle_efficiency(conn, f"V{n}", window))
    return found


def connect(url: str) -> Any:
    return lambda: psycopg.connect(url)


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_a_rebuild_serves_unchanged_answers_throughout_and_ends_equal_to_the_first_build(
    databases: Databases, built: str, name: str
) -> None:
    url = databases.clone(built)
    with psycopg.connect(url, autocommit=True) as conn:
        before, expected = dump(conn), answers(conn)
        indexes = {t: conn.execute(INDEXES, {"table": t}).fetchall() for t in BY_NAME[name].tables}
        options = {t: conn.execute(OPTIONS, {"table": t}).fetchall() for t in BY_NAME[name].tables}

    stop, served, mismatches, failures = threading.Event(), [0], [], []

    def read_all_along() -> None:
        try:
            with psycopg.connect(url, autocommit=True) as reader:
                while not stop.is_set():
                    if answers(reader) != expected:
                        mismatches.append(time.monotonic())
                    served[0] += 1
        except Exception as exc:  # a reader that fails (say, deadlocked) fails the test
            failures.append(exc)

    reader = threading.Thread(target=read_all_along)
    live = Projector(connect(url), ALL, poll_interval=0.05)  # the projector keeps running
    projecting = threading.Thread(target=live.run, args=(stop,))
    reader.start()
    projecting.start()
    try:
        outcome = rebuild(connect(url), BY_NAME[name], batch_size=700)
    finally:
        time.sleep(0.2)  # a few more reads against the new tables
        stop.set()
        reader.join()
        projecting.join()

    assert outcome["switched"] and not outcome["resumed"]
    assert outcome["applied"] > 0
    assert failures == [] and mismatches == [] and served[0] > 0
    with psycopg.connect(url, autocommit=True) as conn:
        assert dump(conn) == before
        assert answers(conn) == expected
        assert conn.execute(SCHEMAS).fetchall() == []  # nothing left behind
        for table in BY_NAME[name].tables:
            assert conn.execute(INDEXES, {"table": table}).fetchall() == indexes[table]
            assert conn.execute(OPTIONS, {"table": table}).fetchall() == options[table]


def test_two_rebuilds_of_every_projection_give_identical_read_models(
    databases: Databases, built: str
) -> None:
    url = databases.clone(built)
    with psycopg.connect(url, autocommit=True) as conn:
        first = dump(conn)
    for _ in range(2):
        for projection in ALL:
            rebuild(connect(url), projection, batch_size=1500)
        with psycopg.connect(url, autocommit=True) as conn:
            assert dump(conn) == first


def test_an_interrupted_rebuild_resumes_where_it_stopped(databases: Databases, built: str) -> None:
    url = databases.clone(built)
    projection = BY_NAME["vehicle_history"]
    with psycopg.connect(url, autocommit=True) as conn:
        before = dump(conn)
    first = rebuild(connect(url), projection, batch_size=1000, stop_after=3000)
    assert first == {"resumed": False, "applied": 3000, "switched": False}
    with psycopg.connect(url, autocommit=True) as conn:
        assert dump(conn) == before  # readers still read the untouched tables
        [(partial,)] = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(schema_of(projection), "vehicle_history")
            )
        ).fetchall()
        assert 0 < partial < len(before["vehicle_history"])

    second = rebuild(connect(url), projection, batch_size=1000)
    assert second["resumed"] and second["switched"]
    total = first["applied"] + second["applied"]
    with psycopg.connect(url, autocommit=True) as conn:
        [(events,)] = conn.execute("SELECT count(*) FROM events").fetchall()
        assert total == events  # nothing applied twice, nothing skipped
        assert dump(conn) == before


def test_a_rebuild_killed_mid_way_resumes_and_a_second_rebuild_at_once_is_refused(
    databases: Databases, built: str
) -> None:
    url = databases.clone(built)
    with psycopg.connect(url, autocommit=True) as conn:
        before = dump(conn)
    env = {**os.environ, "DATABASE_URL": url, "ENERGY_PROJECTOR_BATCH_SIZE": "200"}
    command = [sys.executable, "-m", "main", "projections", "rebuild", "meter_history"]
    killed = subprocess.Popen(command, cwd=ROOT, env=env)
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while conn.execute(STARTED).fetchall() != [(True,)]:
            assert time.monotonic() < deadline, "the rebuild never started"
            time.sleep(0.01)
        with pytest.raises(RebuildBusy):
            rebuild(connect(url), BY_NAME["meter_history"])
    killed.kill()
    killed.wait()

    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert "rebuilt meter_history (resumed)" in finished.stdout
    with psycopg.connect(url, autocommit=True) as conn:
        assert dump(conn) == before
