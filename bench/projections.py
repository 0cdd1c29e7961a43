"""The projection benchmark: catch-up from zero, the efficiency query, and projector lag.

``python -m bench.projections`` runs, for each history size of ``--sizes`` (readings per
device, 60 s apart), on a database of its own (see ``bench.harness.fresh_database``):

1. **seed**: ``--devices`` devices, half meters and half vehicles, every vehicle paired with
   its meter, get that many readings each by COPY (``bench.seed``), then ``VACUUM ANALYZE``;
2. **catch-up**: every projection (the read models and the audit ledger, signing with a
   benchmark key) runs from position zero to
   the head of the log together, the way production runs them (``projections.runtime
   .Projector``: a thread and a connection each). The clock stops for a projection when its
   checkpoint has passed the last event in commit-safe order (``has_reached``); every ~10 s
   the events still behind each one are printed. Figures: events, seconds and events/s all
   together, and each projection's own finishing time. A catch-up still short of the head
   after ``--catch-up-limit`` seconds is reported as such, with the events each projection
   applied in that time; the rest is then applied in big batches (``catch_up``), timed
   apart, so that the query step has its read models;
3. **query**: ``--queries`` 24-hour ``vehicle_efficiency`` answers for random vehicles over the
   last 24 hours of the seeded data, one after another on one autocommit connection, timed
   one by one (p50/p95/p99/max). The seeded fleet maps every vehicle, so each answer must be
   a number, about 0.8 to 1.0 for a vehicle that charged in the window. The read models are
   analysed first (``ANALYZE``), as autovacuum would have done after such a load.

The standard sizes are 288 and 2,000 readings per device: 1.44 and 10 million rows per history
stream (2.88 and 20 million events) for 10,000 devices. The query must cost the same at both.

On the first size's database, after its query step:

4. **lag**: a projector process (``python -m main project``) and an API server
   (``bench.harness.server``) run while ``bench.loadgen`` posts single readings at a steady
   ``--lag-rate`` from 16 clients in a background thread (runs of 5 s with fresh devices each,
   until the probes are done). Meanwhile a probe vehicle of its own posts ``--probes``
   readings, one every ~20 ms; for each, the time from the 202 answer to the moment
   ``vehicle_live`` shows that reading (polled every millisecond) is its lag.

The results go to ``bench/results/projections.json`` and a short Markdown table in
``projections.md``. ``--smoke`` shrinks everything to a few seconds for the test suite.
"""

from __future__ import annotations

import bisect
import functools
import http.client
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import orjson
import psycopg

from bench import loadgen, seed
from bench.fleet import Fleet
from bench.harness import (
    ADMIN_DSN,
    BENCH_LEDGER_KEY,
    RESULTS,
    ROOT,
    Echo,
    fresh_database,
    host_facts,
    server,
    stop,
    write_results,
)
from bench.loadgen import latency_ms, per_second
from domain.efficiency import Window
from eventstore import Checkpoint
from projections.catalogue import with_ledger
from projections.runtime import (
    Projection,
    Projector,
    catch_up,
    checkpoint_of,
    ensure_checkpoints,
    has_reached,
)
from queries.efficiency import Efficiency, vehicle_efficiency

INTERVAL_S = 60
END = "2026-06-15T12:30:00+00:00"  # the seeded history ends here: a fixed, reproducible window
POLL_S = 0.25  # how often the catch-up looks at the checkpoints
PROGRESS_S = 10.0  # how often it prints the events still behind
STALL_S = 300.0  # a catch-up with no checkpoint moving for this long has failed
FINISH_BATCH = 1_000_000  # batch size that finishes a catch-up cut short by its time limit
LAG_CLIENTS = 16
LAG_METERS = LAG_VEHICLES = 100
LAG_WARMUP_S = 3.0  # background load before the first probe
LOAD_RUN_S = 5.0  # the background load is loadgen runs this long, until the probes are done
PROBE_SPACING_S = 0.02
PROBE_TIMEOUT_S = 10.0
PROBE_POLL_S = 0.001
PROBE_VEHICLE = "probe-V00001"

VACUUM_ANALYZE = "VACUUM ANALYZE"
ANALYZE_READ_MODELS = """
ANALYZE meter_live, vehicle_live, meter_history, vehicle_history, vehicle_meter_map,
        meter_hourly, vehicle_hourly
"""
# The last event in commit-safe order: once a checkpoint has passed it, the log is applied.
# (The highest position need not be it: two seeding jobs commit interleaved positions.)
HEAD = "SELECT position FROM events ORDER BY transaction_id DESC, position DESC LIMIT 1"
EVENTS_PER_TRANSACTION = """
SELECT transaction_id::text, count(*) FROM events GROUP BY transaction_id ORDER BY transaction_id
"""
BEHIND_IN_TRANSACTION = """
SELECT count(*) FROM events WHERE transaction_id = %(tx)s::xid8 AND position > %(pos)s
"""
READ_MODEL_ROWS = """
SELECT (SELECT count(*) FROM meter_live),
       (SELECT count(*) FROM vehicle_live),
       (SELECT count(*) FROM meter_history),
       (SELECT count(*) FROM vehicle_history),
       (SELECT count(*) FROM vehicle_meter_map),
       (SELECT coalesce(sum(readings), 0) FROM meter_hourly),
       (SELECT coalesce(sum(readings), 0) FROM vehicle_hourly)
"""
READ_MODELS = (
    "meter_live",
    "vehicle_live",
    "meter_history",
    "vehicle_history",
    "vehicle_meter_map",
    "meter_hourly_readings",
    "vehicle_hourly_readings",
)
PROJECTOR_SESSIONS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'energy-projector'
"""
PROBE_LIVE = "SELECT recorded_at FROM vehicle_live WHERE vehicle_id = %(id)s"
# Tracked files changed since the commit (read-only: no optional locks, the index is untouched).
GIT_MODIFIED = ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"]


@dataclass(frozen=True)
class Sizes:
    """How much each step does; ``readings`` lists the history sizes, per device."""

    devices: int = 10_000
    readings: tuple[int, ...] = (288, 2000)
    batch_size: int = 5000
    queries: int = 2000
    probes: int = 500
    lag_rate: float = 1000.0
    catch_up_limit_s: float = 600.0


SMOKE = Sizes(devices=20, readings=(30, 60), queries=50, probes=50, lag_rate=200.0)


@dataclass(frozen=True)
class Ledger:
    """Events per writer transaction, in commit-safe order, to tell how far behind a checkpoint
    is without counting the log each time (the log does not grow during a catch-up)."""

    transactions: list[int]
    later: list[int]  # events in the transactions from this index on

    @classmethod
    def load(cls, conn: psycopg.Connection[Any]) -> Ledger:
        rows = [(int(tx), int(count)) for tx, count in conn.execute(EVENTS_PER_TRANSACTION)]
        later = [0] * (len(rows) + 1)
        for index in range(len(rows) - 1, -1, -1):
            later[index] = later[index + 1] + rows[index][1]
        return cls([tx for tx, _ in rows], later)

    @property
    def events(self) -> int:
        return self.later[0]

    def behind(self, conn: psycopg.Connection[Any], checkpoint: Checkpoint) -> int:
        """How many events come after ``checkpoint`` in commit-safe order."""
        index = bisect.bisect_right(self.transactions, checkpoint.transaction_id)
        behind = self.later[index]
        if index and self.transactions[index - 1] == checkpoint.transaction_id:
            row = conn.execute(
                BEHIND_IN_TRANSACTION,
                {"tx": str(checkpoint.transaction_id), "pos": checkpoint.position},
            ).fetchone()
            behind += int(row[0]) if row else 0
        return behind


# Every projection the projector runs, the ledger included.
ALL = tuple(with_ledger(BENCH_LEDGER_KEY).values())


def fleet_of(devices: int) -> Fleet:
    """The seeded fleet: half meters, half vehicles, vehicle ``i`` mapped to meter ``i``."""
    meters = devices // 2
    return Fleet(meters=meters, vehicles=devices - meters, interval_s=INTERVAL_S)


def seed_history(url: str, fleet: Fleet, readings: int, end: datetime) -> dict[str, Any]:
    """COPY ``readings`` readings of every device, the last one just before ``end``."""
    # Half a second more than the history spans, so that float rounding never loses a tick.
    days = (readings * INTERVAL_S + 0.5) / 86_400
    seeded = seed.seed(
        url,
        meters=fleet.meters,
        vehicles=fleet.vehicles,
        days=days,
        interval_s=INTERVAL_S,
        end=end,
        jobs=os.cpu_count() or 1,
    )
    if seeded["readings"] != fleet.devices * readings:
        raise RuntimeError(f"seeded {seeded['readings']} readings, not {fleet.devices * readings}")
    began = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(VACUUM_ANALYZE)
    seeded["vacuum_analyze_s"] = round(time.perf_counter() - began, 3)
    return seeded


def catch_up_all(url: str, batch_size: int, limit_s: float, echo: Echo) -> dict[str, Any]:
    """Run every projection from position zero to the head together; their finishing times.

    A projection not at the head after ``limit_s`` is reported with the events it applied in
    that time, then finished in batches of ``FINISH_BATCH`` (for the query step to have its
    read models); that part is timed apart and is no catch-up figure.
    """
    names = [projection.name for projection in ALL]
    with psycopg.connect(url, autocommit=True) as conn:
        ledger = Ledger.load(conn)
        row = conn.execute(HEAD).fetchone()
        if row is None:
            raise RuntimeError("the log is empty: nothing to catch up")
        head = int(row[0])
        ensure_checkpoints(conn, ALL)
        stop = threading.Event()
        projector = Projector(lambda: psycopg.connect(url), ALL, batch_size=batch_size)
        thread = threading.Thread(target=projector.run, args=(stop,), name="projector")
        watch = Watch(conn, names, head, ledger, time.perf_counter())
        thread.start()
        try:
            watch.until_head(limit_s, thread, echo)
            applied = watch.applied()
        finally:
            stop.set()
            thread.join()
        finish = None if watch.completed else finish_catch_up(conn, url, head, watch, echo)
    completed = watch.completed
    seconds = max(watch.finished.values()) if completed else None
    return {
        "events": ledger.events,
        "head_position": head,
        "batch_size": batch_size,
        "limit_s": limit_s,
        "completed": completed,
        "seconds": round(seconds, 3) if seconds else None,
        "events_per_s": per_second(ledger.events, seconds) if seconds else None,
        "projections": {name: _projection_figures(watch, name, applied, limit_s) for name in names},
        "progress": watch.progress,
        "finish": finish,
    }


def _projection_figures(
    watch: Watch, name: str, applied: dict[str, int], limit_s: float
) -> dict[str, Any]:
    """One projection's catch-up: its finishing time, or what it applied within the limit."""
    seconds = watch.finished.get(name)
    if seconds is not None:
        events = watch.ledger.events
        return {
            "seconds": round(seconds, 3),
            "applied": events,
            "events_per_s": per_second(events, seconds),
        }
    return {
        "seconds": None,
        "applied": applied[name],
        "events_per_s": per_second(applied[name], limit_s),
    }


class Watch:
    """Follows the checkpoints of a catch-up: when each projection reached the head, and the
    events still behind each one every ``PROGRESS_S``."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        names: list[str],
        head: int,
        ledger: Ledger,
        began: float,
    ) -> None:
        self.conn, self.names, self.head, self.ledger, self.began = conn, names, head, ledger, began
        self.finished: dict[str, float] = {}
        self.progress: list[dict[str, Any]] = []

    @property
    def completed(self) -> bool:
        return len(self.finished) == len(self.names)

    def until_head(self, limit_s: float, thread: threading.Thread, echo: Echo) -> None:
        """Poll until every projection reached the head or ``limit_s`` passed."""
        printed = moved = self.began
        last: dict[str, Checkpoint] = {}
        while not self.completed:
            time.sleep(POLL_S)
            now = time.perf_counter()
            for name in self.names:
                if name not in self.finished and has_reached(self.conn, name, self.head):
                    self.finished[name] = now - self.began
            if now - printed >= PROGRESS_S:
                printed = now
                checkpoints = self.checkpoints()
                if checkpoints != last:
                    last, moved = checkpoints, now
                behind = self.behind(checkpoints)
                self.progress.append({"s": round(now - self.began, 1), "behind": behind})
                listed = ", ".join(f"{name} {count:,}" for name, count in behind.items())
                echo(f"  catch-up {now - self.began:6.0f} s, events behind: {listed}")
            if now - self.began >= limit_s:
                return
            if not thread.is_alive():
                raise RuntimeError("the projector stopped before reaching the head")
            if now - moved > STALL_S:
                raise RuntimeError(f"no checkpoint moved in {STALL_S:.0f} s: {last}")

    def checkpoints(self) -> dict[str, Checkpoint]:
        return {name: checkpoint_of(self.conn, name) for name in self.names}

    def behind(self, checkpoints: dict[str, Checkpoint]) -> dict[str, int]:
        """Events still behind each projection not at the head yet."""
        return {
            name: self.ledger.behind(self.conn, checkpoint)
            for name, checkpoint in checkpoints.items()
            if name not in self.finished
        }

    def applied(self) -> dict[str, int]:
        """Events applied so far by each projection not at the head yet."""
        behind = self.behind(self.checkpoints())
        return {name: self.ledger.events - count for name, count in behind.items()}


def finish_catch_up(
    conn: psycopg.Connection[Any], url: str, head: int, watch: Watch, echo: Echo
) -> dict[str, Any]:
    """Bring the projections not at the head there, in batches of ``FINISH_BATCH``, a thread
    each; the seconds each took."""
    left = [projection for projection in ALL if projection.name not in watch.finished]
    echo(f"  finishing {', '.join(p.name for p in left)} in batches of {FINISH_BATCH:,}")
    began = time.perf_counter()
    done: dict[str, float] = {}

    def finish(projection: Projection) -> None:
        with psycopg.connect(url, autocommit=True) as own:
            own.execute("SET synchronous_commit = off")
            deadline = time.monotonic() + STALL_S * 10
            # The fence is cluster-wide: a transaction open elsewhere can hold it back.
            while not has_reached(own, projection.name, head):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{projection.name} did not reach the head")
                if not catch_up(own, projection, FINISH_BATCH):
                    time.sleep(0.1)
        done[projection.name] = round(time.perf_counter() - began, 3)

    threads = [_in_background(functools.partial(finish, p), name=p.name) for p in left]
    for thread, _ in threads:
        thread.join()
    for _, outcome in threads:
        if "error" in outcome:
            raise outcome["error"]
    if not all(has_reached(conn, p.name, head) for p in left):
        raise RuntimeError("the finishing catch-up stopped short of the head")
    echo(f"  finished in {max(done.values()):.1f} s: {done}")
    return {"batch_size": FINISH_BATCH, "seconds": max(done.values()), "projections": done}


def analyze_read_models(url: str) -> float:
    """``ANALYZE`` the read models (this server runs no autovacuum); the seconds it took."""
    began = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(ANALYZE_READ_MODELS)
    return round(time.perf_counter() - began, 3)


def time_queries(
    url: str, vehicle_ids: list[str], end: datetime, queries: int, rng_seed: int = 1
) -> dict[str, Any]:
    """Time ``queries`` 24-hour efficiency answers ending at ``end`` for random vehicles."""
    rng = random.Random(rng_seed)
    window = Window.ending(end)
    chosen = [rng.choice(vehicle_ids) for _ in range(queries)]
    latencies: list[float] = []
    answers: list[Efficiency | None] = []
    with psycopg.connect(url, autocommit=True) as conn:
        for vehicle_id in chosen:
            started = time.perf_counter()
            answers.append(vehicle_efficiency(conn, vehicle_id, window))
            latencies.append(time.perf_counter() - started)
    return {
        "queries": queries,
        "window": {"start": window.start.isoformat(), "end": window.end.isoformat()},
        "latency_ms": latency_ms(latencies),
        **answer_checks(answers),
    }


def answer_checks(answers: list[Efficiency | None]) -> dict[str, Any]:
    """How many answers were null, without charging, above 1 (impossible: more energy into the
    battery than from the grid) or below 0.8 (a short charge against hours of standby draw)."""
    found = [answer for answer in answers if answer is not None]
    ratios = [a.efficiency for a in found if a.efficiency is not None and a.dc_kwh > 0]
    return {
        "answered": len(found),
        "null": sum(answer is None or answer.efficiency is None for answer in answers),
        "not_charging": sum(a.dc_kwh == 0 for a in found),
        "above_1": sum(ratio > 1.0 for ratio in ratios),
        "below_0_8": sum(ratio < 0.8 for ratio in ratios),
        "efficiency": {
            "min": round(min(ratios), 4) if ratios else None,
            "max": round(max(ratios), 4) if ratios else None,
        },
        "vehicle_readings_per_answer": {
            "min": min((a.vehicle_readings for a in found), default=0),
            "max": max((a.vehicle_readings for a in found), default=0),
        },
    }


def read_model_rows(url: str) -> dict[str, int]:
    """Rows of every read model (and readings summed in the hourly rollups)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(READ_MODEL_ROWS).fetchone()
    return dict(zip(READ_MODELS, (int(value) for value in row or ()), strict=True))


@contextmanager
def projector(database_url: str, timeout_s: float = 30.0) -> Iterator[int]:
    """``python -m main project``, yielded (its pid) once every projection thread is connected;
    stopped with SIGTERM afterwards."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ENERGY_LOG_LEVEL": "warning",
        "ENERGY_LEDGER_KEY": BENCH_LEDGER_KEY.decode(),
    }
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "main", "project"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        try:
            _wait_projecting(database_url, process, timeout_s, log)
            yield process.pid
        finally:
            stop(process)


def _wait_projecting(
    url: str, process: subprocess.Popen[bytes], timeout_s: float, log: Any
) -> None:
    sessions = len(ALL) + 1  # a connection per projection thread and the listener's
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline and process.poll() is None:
            row = conn.execute(PROJECTOR_SESSIONS).fetchone()
            if row and row[0] >= sessions:
                return
            time.sleep(0.05)
    log.seek(0)
    tail = log.read()[-4000:].decode(errors="replace")
    raise RuntimeError(f"the projector did not start:\n{tail}")


def measure_lag(url: str, probes: int, rate: float, echo: Echo) -> dict[str, Any]:
    """Projector lag (202 answer to ``vehicle_live``) of probe readings under steady load."""
    switch = sys.getswitchinterval()
    # The probe shares the interpreter with the load generator's thread: a short switch
    # interval keeps the wait for the GIL well under the millisecond the probe polls at.
    sys.setswitchinterval(0.0005)
    stop = threading.Event()
    try:
        with projector(url), server(url, workers=2) as running:
            background, outcome = _in_background(
                lambda: steady_load(running.url, url, rate, stop), "loadgen"
            )
            try:
                time.sleep(LAG_WARMUP_S)
                probed = probe(running.url, url, probes)
            finally:
                stop.set()
                background.join()
    finally:
        sys.setswitchinterval(switch)
    if "error" in outcome:
        raise outcome["error"]
    load = outcome["result"]
    echo(
        f"  lag: {probed['seen']}/{probes} probes seen, ms {probed['lag_ms']}; background "
        f"{load['readings_per_s']:.0f} readings/s (target {rate:.0f}), errors {load['errors']}"
    )
    return {**probed, "background": load}


def steady_load(
    base_url: str, database_url: str, rate: float, stop: threading.Event
) -> dict[str, Any]:
    """``loadgen`` at ``rate`` until ``stop`` is set, in runs of ``LOAD_RUN_S`` (each with
    devices of its own, so that every reading is new); their figures together."""
    runs: list[dict[str, Any]] = []
    while not stop.is_set():
        config = loadgen.Config(
            url=base_url,
            mode="single",
            concurrency=LAG_CLIENTS,
            meters=LAG_METERS,
            vehicles=LAG_VEHICLES,
            prefix=f"lag{len(runs)}-",
            duration_s=LOAD_RUN_S,
            rate=rate,
            map_vehicles=False,
        )
        runs.append(loadgen.run(config, database_url))
    return combined_load(runs, rate)


def combined_load(runs: list[dict[str, Any]], rate: float) -> dict[str, Any]:
    """The figures of several ``loadgen`` runs as one; latency is the worst run's."""
    elapsed = sum(run["elapsed_s"] for run in runs)
    acknowledged = sum(run["items"].get(s, 0) for run in runs for s in ("accepted", "duplicate"))
    errors: Counter[str] = Counter()
    items: Counter[str] = Counter()
    for run in runs:
        errors.update(run["errors"])
        items.update(run["items"])
    checks = ("checked", "lost", "doubled")
    return {
        "rate": rate,
        "clients": LAG_CLIENTS,
        "runs": len(runs),
        "elapsed_s": round(elapsed, 3),
        "requests": sum(run["requests"] for run in runs),
        "readings_per_s": per_second(acknowledged, elapsed),
        "latency_ms": {
            name: max((run["latency_ms"][name] for run in runs), default=0.0)
            for name in ("p50", "p95", "p99", "max")
        },
        "errors": dict(errors),
        "items": dict(items),
        "verify": {key: sum(run["verify"][key] for run in runs) for key in checks},
    }


def _in_background(
    work: Callable[[], Any], name: str = "background"
) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``work`` in a thread; its result (or error) lands in the returned dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as exc:  # re-raised by the caller after the join
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread, outcome


def probe(base_url: str, database_url: str, probes: int) -> dict[str, Any]:
    """Post ``probes`` readings of the probe vehicle, each timed until ``vehicle_live`` has it."""
    address = urlsplit(base_url)
    client = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port or 80)
    first = int(time.time()) - probes - 60  # whole seconds, increasing, all in the past
    lags: list[float] = []
    posts: list[float] = []
    errors: Counter[str] = Counter()
    unseen = 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        began = time.perf_counter()
        for index in range(probes):
            if (wait := began + index * PROBE_SPACING_S - time.perf_counter()) > 0:
                time.sleep(wait)
            at = first + index
            sent = time.perf_counter()
            status, answer = _post(client, probe_reading(at))
            answered = time.perf_counter()
            posts.append(answered - sent)
            if status != 202 or answer.get("status") != "accepted":
                errors[f"{status} {answer.get('status', '')}".strip()] += 1
                continue
            seen = _await_live(conn, datetime.fromtimestamp(at, UTC))
            if seen is None:
                unseen += 1
            else:
                lags.append(seen - answered)
    client.close()
    return {
        "probes": probes,
        "seen": len(lags),
        "unseen": unseen,
        "errors": dict(errors),
        "spacing_ms": PROBE_SPACING_S * 1000,
        "lag_ms": latency_ms(lags),
        "post_ms": latency_ms(posts),
    }


def probe_reading(at: int) -> bytes:
    body = {
        "vehicleId": PROBE_VEHICLE,
        "soc": 50.0,
        "kwhDeliveredDc": 0.1,
        "batteryTemp": 25.0,
        "timestamp": at,
    }
    return orjson.dumps(body)


def _post(client: http.client.HTTPConnection, body: bytes) -> tuple[int, dict[str, Any]]:
    """POST one reading on the keep-alive connection (reopened once if the server closed it)."""
    headers = {"Content-Type": "application/json"}
    for attempt in (1, 2):
        try:
            client.request("POST", "/v1/ingest", body, headers)
            answer = client.getresponse()
            data = answer.read()
            return answer.status, orjson.loads(data) if data else {}
        except (http.client.HTTPException, OSError):
            client.close()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _await_live(conn: psycopg.Connection[Any], recorded_at: datetime) -> float | None:
    """When ``vehicle_live`` first shows the probe's reading at ``recorded_at``; None: never."""
    deadline = time.perf_counter() + PROBE_TIMEOUT_S
    while (now := time.perf_counter()) < deadline:
        row = conn.execute(PROBE_LIVE, {"id": PROBE_VEHICLE}).fetchone()
        if row and row[0] == recorded_at:
            return now
        time.sleep(PROBE_POLL_S)
    return None


def run_size(
    admin_dsn: str,
    fleet: Fleet,
    readings: int,
    sizes: Sizes,
    *,
    end: datetime,
    keep: bool,
    lag: bool,
    echo: Echo,
) -> dict[str, Any]:
    """Seed one history size, catch up, time the query and (when ``lag``) measure the lag."""
    label = f"{fleet.devices:,} devices x {readings:,} readings"
    with fresh_database(admin_dsn, keep) as url:
        echo(f"{label}: seeding")
        seeded = seed_history(url, fleet, readings, end)
        echo(f"  seed: {seeded['events']:,} events, {seeded['events_per_s']:,.0f}/s")
        caught = catch_up_all(url, sizes.batch_size, sizes.catch_up_limit_s, echo)
        echo(f"  catch-up: {describe_catch_up(caught)}")
        analyzed = analyze_read_models(url)
        last = datetime.fromisoformat(seeded["last"])
        queried = time_queries(url, fleet.vehicle_ids, last, sizes.queries)
        queried["analyze_s"] = analyzed
        echo(
            f"  query: {queried['queries']} answers, ms {queried['latency_ms']}, "
            f"{queried['null']} null, {queried['not_charging']} not charging"
        )
        result: dict[str, Any] = {
            "readings_per_device": readings,
            "devices": fleet.devices,
            "meters": fleet.meters,
            "vehicles": fleet.vehicles,
            "history_rows_per_stream": fleet.meters * readings,
            "seed": seeded,
            "catch_up": caught,
            "query": queried,
            # Counted after the query step (a scan of history must not warm its cache) and
            # before the lag step adds readings.
            "read_models": read_model_rows(url),
        }
        if lag:
            result["lag"] = measure_lag(url, sizes.probes, sizes.lag_rate, echo)
        if keep:
            echo(f"  database kept: {url}")
    return result


def describe_catch_up(caught: dict[str, Any]) -> str:
    """One human line for a catch-up."""
    projections = caught["projections"]
    if caught["completed"]:
        done = ", ".join(f"{name} {p['seconds']:.1f} s" for name, p in _by_finish(projections))
        return (
            f"{caught['events']:,} events in {caught['seconds']:.1f} s = "
            f"{caught['events_per_s']:,.0f} events/s; {done}"
        )
    parts = [
        f"{name} done at {p['seconds']:.1f} s"
        if p["seconds"] is not None
        else f"{name} {p['applied']:,} applied ({p['events_per_s']:,.0f}/s)"
        for name, p in _by_finish(projections)
    ]
    return (
        f"NOT at the head of {caught['events']:,} events after {caught['limit_s']:.0f} s: "
        + ", ".join(parts)
        + f"; finished in batches of {caught['finish']['batch_size']:,} in "
        f"{caught['finish']['seconds']:.1f} s"
    )


def _by_finish(projections: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Projections first to last: by finishing time, then by events applied."""
    return sorted(
        projections.items(),
        key=lambda item: (item[1]["seconds"] is None, item[1]["seconds"] or -item[1]["applied"]),
    )


def modified_files() -> list[str]:
    """Tracked files of the measured working tree that differ from its commit."""
    listed = subprocess.run(GIT_MODIFIED, cwd=ROOT, capture_output=True, text=True).stdout
    return sorted(line[3:] for line in listed.splitlines() if line.strip())


def run_benchmark(
    *,
    admin_dsn: str = ADMIN_DSN,
    sizes: Sizes = Sizes(),
    end: datetime | None = None,
    keep_database: bool = False,
    echo: Echo = print,
    save: Callable[[dict[str, Any]], object] | None = None,
) -> dict[str, Any]:
    """Every step at every size of ``sizes``; the results as a JSON-ready dict.

    ``save`` is given the results so far after each size, so that a long run cut short keeps
    the sizes it completed.
    """
    end = end or datetime.fromisoformat(END)
    fleet = fleet_of(sizes.devices)
    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host_facts(admin_dsn),
        "modified_files": modified_files(),
        "config": {**asdict(sizes), "end": end.isoformat(), "interval_s": INTERVAL_S},
        "sizes": [],
        "lag": None,
    }
    for number, readings in enumerate(sizes.readings):
        figures = run_size(
            admin_dsn,
            fleet,
            readings,
            sizes,
            end=end,
            keep=keep_database,
            lag=number == 0,
            echo=echo,
        )
        result["lag"] = figures.pop("lag", result["lag"])
        result["sizes"].append(figures)
        if save is not None:
            save(result)
    return result


def markdown(result: dict[str, Any]) -> str:
    """A short Markdown report: step | size | events | figure(s)."""
    host, config = result["host"], result["config"]
    lines = [
        f"# Projection benchmark {result['started_at']}",
        "",
        f"{host['cpus']} CPUs, Python {host['python']}, PostgreSQL {host['postgresql']}, "
        f"commit {host['commit']}; {config['devices']:,} devices (half meters, half vehicles), "
        f"readings {config['interval_s']} s apart; projector batch size {config['batch_size']}.",
        "",
    ]
    if result.get("modified_files"):
        lines += [
            f"Working tree changed since the commit: {', '.join(result['modified_files'])}.",
            "",
        ]
    lines += [
        "| step | size | events | figure(s) |",
        "|---|---|---:|---|",
    ]
    for size in result["sizes"]:
        label = (
            f"{size['readings_per_device']:,} readings/device "
            f"({size['history_rows_per_stream']:,} rows/stream)"
        )
        seeded, caught, queried = size["seed"], size["catch_up"], size["query"]
        lines.append(
            f"| seed (COPY) | {label} | {seeded['events']:,} "
            f"| {seeded['events_per_s']:,.0f} events/s ({seeded['elapsed_s']:.1f} s) |"
        )
        lines += _catch_up_rows(caught, label)
        lat = queried["latency_ms"]
        lines.append(
            f"| efficiency query, 24 h | {label} | {caught['events']:,} "
            f"| p50 {lat['p50']} / p95 {lat['p95']} / **p99 {lat['p99']}** / max {lat['max']} ms; "
            f"{queried['queries']} queries, {queried['null']} null, "
            f"{queried['above_1']} above 1, {queried['below_0_8']} below 0.8 |"
        )
    lag = result["lag"]
    if lag:
        first = result["sizes"][0]
        background, lat = lag["background"], lag["lag_ms"]
        lines.append(
            f"| projector lag, POST 202 to vehicle_live | {first['readings_per_device']:,} "
            f"readings/device | {background['requests']:,} background requests "
            f"| p50 {lat['p50']} / p95 {lat['p95']} / **p99 {lat['p99']}** / max {lat['max']} ms; "
            f"{lag['seen']}/{lag['probes']} seen; background "
            f"{background['readings_per_s']:,.0f} readings/s (target {background['rate']:,.0f}), "
            f"errors {background['errors'] or 0} |"
        )
    return "\n".join(lines) + "\n"


def _catch_up_rows(caught: dict[str, Any], label: str) -> list[str]:
    events, together = f"{caught['events']:,}", len(caught["projections"])
    if caught["completed"]:
        head = f"**{caught['events_per_s']:,.0f} events/s** ({caught['seconds']:.1f} s to the head)"
    else:
        finish = caught["finish"]
        head = (
            f"**not at the head after {caught['limit_s']:.0f} s**; the rest applied in batches "
            f"of {finish['batch_size']:,} in {finish['seconds']:.0f} s (not a catch-up figure)"
        )
    if caught.get("note"):
        head += f" ({caught['note']})"
    rows = [f"| catch-up, {together} projections together | {label} | {events} | {head} |"]
    for name, figures in _by_finish(caught["projections"]):
        if figures["seconds"] is not None:
            figure = (
                f"at the head at {figures['seconds']:.1f} s "
                f"({figures['events_per_s']:,.0f} events/s)"
            )
        else:
            figure = (
                f"{figures['applied']:,} applied in {caught['limit_s']:.0f} s "
                f"({figures['events_per_s']:,.0f} events/s)"
            )
        rows.append(f"| catch-up: {name} | {label} | {events} | {figure} |")
    return rows


def _readings(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        sizes = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"not a comma-separated list of integers: {value!r}") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter("every size must be at least 1")
    return sizes


@click.command()
@click.option("--admin-dsn", default=ADMIN_DSN, show_default=True, help="Server to create on.")
@click.option("--keep-database", is_flag=True, help="Do not drop the fresh databases at the end.")
@click.option("--devices", type=click.IntRange(min=2), default=None, help="Devices [10000].")
@click.option(
    "--sizes",
    "readings",
    callback=lambda _c, _p, value: _readings(value),
    help="Readings per device of each history size, comma-separated [288,2000].",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Projector [5000].")
@click.option("--queries", type=click.IntRange(min=1), default=None, help="Efficiency [2000].")
@click.option("--probes", type=click.IntRange(min=1), default=None, help="Lag probes [500].")
@click.option(
    "--lag-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Background readings/s during the lag step [1000].",
)
@click.option(
    "--catch-up-limit",
    type=click.FloatRange(min=1),
    default=None,
    help="Seconds a catch-up may take before it is cut short (and finished apart) [600].",
)
@click.option(
    "--end",
    callback=lambda _c, _p, value: seed.cli_moment(value),
    help=f"ISO-8601 end of the seeded history [{END}].",
)
@click.option("--smoke", is_flag=True, help="Tiny sizes: a few seconds in all.")
@click.option("--out", type=click.Path(path_type=Path), default=RESULTS, show_default=True)
def cli(
    admin_dsn: str,
    keep_database: bool,
    devices: int | None,
    readings: tuple[int, ...] | None,
    batch_size: int | None,
    queries: int | None,
    probes: int | None,
    lag_rate: float | None,
    catch_up_limit: float | None,
    end: datetime | None,
    smoke: bool,
    out: Path,
) -> None:
    """Catch-up, efficiency query and lag of the projections; write projections.json/.md."""
    changes: dict[str, Any] = {
        "devices": devices,
        "readings": readings,
        "batch_size": batch_size,
        "queries": queries,
        "probes": probes,
        "lag_rate": lag_rate,
        "catch_up_limit_s": catch_up_limit,
    }
    sizes = replace(SMOKE if smoke else Sizes(), **{k: v for k, v in changes.items() if v})
    result = run_benchmark(
        admin_dsn=admin_dsn,
        sizes=sizes,
        end=end,
        keep_database=keep_database,
        echo=click.echo,
        save=lambda partial: write_results(partial, out, "projections", markdown),
    )
    for path in write_results(result, out, "projections", markdown):
        click.echo(f"wrote {path}")


if __name__ == "__main__":
    cli()
