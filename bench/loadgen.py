"""Load generator: posts simulated meter and vehicle readings to a running server.

Every device sends one reading per ``--interval`` of simulated time; the timeline starts far
enough in the past that the whole run stays behind the server clock. A share of requests
re-sends an already acknowledged reading (the server must answer ``duplicate`` with the same
event id) and a share of readings is held back a few intervals and sent late (older than the
device's newest). Before the timed phase vehicle ``i`` is mapped to meter ``i``.

Modes: ``single`` (one JSON reading per request), ``batch`` (JSON arrays or NDJSON of
``--batch-size`` readings) and ``health`` (``GET /health``: the no-op ceiling). The client is
asyncio streams speaking raw HTTP/1.1 over keep-alive connections, one per simulated client:
on this kind of box it costs about half the CPU per request of ``http.client`` in threads.

By default every client sends its next request as soon as the last one is answered. With
``--rate`` the run is paced to that many readings per second across all clients (requests per
second for ``health``): request ``n`` is due at ``n * readings per request / rate`` seconds
after the start, and a client holding it waits until then. A server that falls behind gets
the overdue requests at once, so the rate is a ceiling, not a promise.

With ``--verify-dsn`` every acknowledged event id (accepted or duplicate) is looked up in the
``events`` table afterwards: each must be there exactly once (``lost`` and ``doubled`` are 0).
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import random
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import orjson
import psycopg

from bench.fleet import Fleet

ACKED_COUNTS = """
SELECT event_id, count(*) FROM events WHERE event_id = ANY(%(ids)s::uuid[]) GROUP BY event_id
"""

JSON = "application/json"
NDJSON = "application/x-ndjson"
MODES = ("single", "batch", "health")
EARLIEST = 946_684_800 + 86_400  # a day after 2000-01-01, the server's default earliest
RATE_CEILING = 200_000  # readings/s no run on one box reaches: sizes the timeline
LATE_LAG_TICKS = 5  # a late reading is sent this many intervals after its time
DUPLICATE_POOL = 50_000  # acknowledged readings kept for re-sending
UNREAD_BYTES = 256 * 2**20  # answers kept unread at most (see ``Stats.record``)
# The garbage collector during the timed phase (see ``quiet_collector``).
COLLECTOR_THRESHOLDS = (5_000, 10, 10)


class HttpError(Exception):
    """The server's answer is not HTTP/1.1 this client understands."""


@dataclass(frozen=True)
class Config:
    """One load run; ``requests``/``readings`` bound it by count, ``duration_s`` by time."""

    url: str
    mode: str = "single"
    concurrency: int = 8
    batch_size: int = 1000
    ndjson: bool = False
    meters: int = 100
    vehicles: int = 100
    prefix: str = field(default_factory=lambda: f"lg{secrets.token_hex(3)}-")
    interval_s: int = 60
    duplicates: float = 0.05
    late: float = 0.05
    requests: int | None = None
    readings: int | None = None
    duration_s: float = 10.0
    seed: int = 1
    map_vehicles: bool = True
    token: str | None = None  # a bearer token sent with every request (auth on)
    rate: float | None = None  # readings/s across all clients; None: as fast as possible


class Connection:
    """One keep-alive HTTP/1.1 connection; reopened lazily after the server closes it.
    ``token``, when given, goes with every request as its bearer token."""

    def __init__(self, host: str, port: int, token: str | None = None) -> None:
        self.host, self.port = host, port
        self._auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = JSON
    ) -> tuple[int, bytes]:
        """Send one request and return ``(status, body)``."""
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self._auth}"
        if method == "POST":
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        self._writer.write(head.encode() + b"\r\n" + body)
        status, length, close = _parse_head(await self._reader.readuntil(b"\r\n\r\n"))
        data = await self._reader.readexactly(length)
        if close:
            self.close()
        return status, data

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """``(status, content length, connection closes)`` of a response head."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise HttpError(f"not an HTTP/1.x status line: {lines[0]!r}")
    length, close = 0, parts[0] == b"HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = value.strip().lower() == b"close"
        elif name == b"transfer-encoding":
            raise HttpError("chunked answers are not supported")
    return int(parts[1]), length, close


@dataclass
class Reading:
    """A reading body and, once acknowledged, the event id the server gave it."""

    body: dict[str, Any]
    event_id: str | None = None
    pooled: bool = False  # in the workload's pool of readings to send again


class Workload:
    """The readings to send, in order: device by device, interval by interval.

    Each fresh reading is held back with probability ``late`` and sent ``LATE_LAG_TICKS``
    intervals later; with probability ``duplicates`` a request re-sends an acknowledged one.
    """

    def __init__(self, fleet: Fleet, *, start: int, end: int, duplicates: float, late: float):
        self.fleet, self.at, self.end = fleet, start, end
        self.duplicates, self.late = duplicates, late
        self.rng = random.Random(fleet.rng.random())
        self.sent: Counter[str] = Counter()
        self.exhausted = False
        self._device = 0
        self._fresh = 0
        self._lag = LATE_LAG_TICKS * fleet.devices
        self._deferred: deque[tuple[int, Reading]] = deque()
        self._acked: list[Reading] = []

    def next(self) -> Reading | None:
        """The next reading to send, or ``None`` once the timeline reaches the present."""
        rng = self.rng
        if self._acked and rng.random() < self.duplicates:
            self.sent["duplicate"] += 1
            return rng.choice(self._acked)
        if self._deferred and self._fresh - self._deferred[0][0] >= self._lag:
            self.sent["late"] += 1
            return self._deferred.popleft()[1]
        while (reading := self._next_fresh()) is not None:
            if rng.random() < self.late:
                self._deferred.append((self._fresh, reading))
                continue
            self.sent["fresh"] += 1
            return reading
        self.exhausted = True
        return None

    def _next_fresh(self) -> Reading | None:
        fleet = self.fleet
        if self._device == fleet.devices:
            self._device, self.at = 0, self.at + fleet.interval_s
        if self.at > self.end:
            return None
        index = self._device
        self._device += 1
        self._fresh += 1
        if index < fleet.meters:
            return Reading(fleet.meter_reading(index, self.at))
        return Reading(fleet.vehicle_reading(index - fleet.meters, self.at))

    def acknowledged(self, reading: Reading) -> None:
        """Remember an acknowledged reading so that it can be sent again as a duplicate."""
        if reading.pooled:
            return
        reading.pooled = True
        if len(self._acked) < DUPLICATE_POOL:
            self._acked.append(reading)
        else:
            self._acked[self.rng.randrange(DUPLICATE_POOL)] = reading


@dataclass
class Job:
    """One request: its body and the readings it carries (none for ``GET /health``)."""

    method: str
    path: str
    body: bytes = b""
    content_type: str = JSON
    readings: list[Reading] = field(default_factory=list)
    due: float = 0.0  # perf_counter time before which it must not be sent (0: at once)


@dataclass
class Stats:
    """What the server answered, request by request and reading by reading."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    items: Counter[str] = field(default_factory=Counter)
    mappings: Counter[str] = field(default_factory=Counter)
    accepted: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)
    accepted_twice: int = 0
    duplicate_mismatches: int = 0
    readings_sent: int = 0
    # Answers kept to be read later, in the order they came (see ``record``).
    unread: list[tuple[Job, bytes]] = field(default_factory=list)
    unread_bytes: int = 0

    def record(self, job: Job, status: int, data: bytes, workload: Workload) -> None:
        """Account for one answer; acknowledged readings feed the duplicate pool.

        A 202 acknowledged every reading of the request, so its readings join the pool
        at once and its body is only kept, to be read by ``read_answers`` after the timed
        phase (reading 1,000 items' answers cost this client 2.5-3 of its 6-6.6 ms of CPU
        per batch, CPU taken from the server on a shared box). Any other answer is read
        now, after those kept: every answer is read in the order it came, so a duplicate
        is always checked against the event id of the reading it repeats. Past
        ``UNREAD_BYTES`` of kept answers (a long run) they are read at once."""
        self.statuses[str(status)] += 1
        if not job.readings:
            return
        if status == 202:
            for reading in job.readings:
                workload.acknowledged(reading)
            self.unread.append((job, data))
            self.unread_bytes += len(data)
            if self.unread_bytes > UNREAD_BYTES:
                self.read_answers()
        elif status == 207:
            self.read_answers()
            self._read(job, data, workload)

    def read_answers(self) -> None:
        """Read every kept answer, oldest first."""
        for job, data in self.unread:
            self._read(job, data, None)
        self.unread.clear()
        self.unread_bytes = 0

    def _read(self, job: Job, data: bytes, workload: Workload | None) -> None:
        answer = orjson.loads(data)
        items = answer.get("items", [answer])
        for reading, item in zip(job.readings, items, strict=True):
            self._item(reading, item, workload)

    def _item(self, reading: Reading, item: dict[str, Any], workload: Workload | None) -> None:
        status, event_id = item["status"], item.get("eventId")
        self.items[status] += 1
        if status not in ("accepted", "duplicate"):
            return
        assert isinstance(event_id, str)  # an accepted or duplicate item names its event
        if reading.event_id is not None and (status != "duplicate" or event_id != reading.event_id):
            self.duplicate_mismatches += 1
        if status == "accepted":
            self.accepted_twice += event_id in self.accepted
            self.accepted.add(event_id)
        self.acked.add(event_id)
        if reading.event_id is None:
            reading.event_id = event_id
        if workload is not None:
            workload.acknowledged(reading)


class Plan:
    """Hands out requests until a count bound, the deadline or the timeline's end is reached.

    With a rate, each request carries the time it is due (see ``due``).
    """

    def __init__(self, config: Config, workload: Workload, stats: Stats) -> None:
        self.config, self.workload, self.stats = config, workload, stats
        self.began = 0.0
        self.deadline = math.inf
        self.issued = 0

    def due(self) -> float:
        """When the next request is due: ``issued`` requests' readings at ``rate`` (0: now)."""
        config = self.config
        if config.rate is None:
            return 0.0
        per_request = config.batch_size if config.mode == "batch" else 1
        return self.began + self.issued * per_request / config.rate

    def next_job(self) -> Job | None:
        config, stats = self.config, self.stats
        due = self.due()
        if max(time.perf_counter(), due) >= self.deadline:
            return None
        if config.requests is not None and self.issued >= config.requests:
            return None
        if config.mode == "health":
            self.issued += 1
            return Job("GET", "/health", due=due)
        size = 1 if config.mode == "single" else config.batch_size
        if config.readings is not None:
            size = min(size, config.readings - stats.readings_sent)
        readings: list[Reading] = []
        while len(readings) < size and (reading := self.workload.next()) is not None:
            readings.append(reading)
        if not readings:
            return None
        self.issued += 1
        stats.readings_sent += len(readings)
        if config.mode == "single":
            body = orjson.dumps(readings[0].body)
            return Job("POST", "/v1/ingest", body, readings=readings, due=due)
        if config.ndjson:
            body = b"\n".join(orjson.dumps(r.body) for r in readings) + b"\n"
            return Job("POST", "/v1/ingest", body, NDJSON, readings, due)
        body = orjson.dumps([r.body for r in readings])
        return Job("POST", "/v1/ingest", body, JSON, readings, due)


def timeline(config: Config, devices: int) -> tuple[int, int]:
    """``(start, end)`` epoch seconds: long enough for the run's bound, wholly in the past."""
    interval = config.interval_s
    end = int(time.time()) // interval * interval - interval
    per_request = 1 if config.mode == "single" else config.batch_size
    if config.readings is not None:
        most = config.readings
    elif config.requests is not None:
        most = config.requests * per_request
    else:
        most = math.ceil(config.duration_s * (config.rate or RATE_CEILING))
    ticks = math.ceil(most / max(devices, 1)) + LATE_LAG_TICKS + 1
    return max(end - ticks * interval, EARLIEST), end


async def _map_pairs(conns: list[Connection], fleet: Fleet, stats: Stats) -> None:
    """Map vehicle ``i`` to meter ``i`` (not timed); mapping ids are verified too."""
    bodies = deque(orjson.dumps({"vehicleId": v, "meterId": m}) for v, m in fleet.pairs())

    async def worker(conn: Connection) -> None:
        while bodies:
            status, data = await conn.request("POST", "/v1/mappings", bodies.popleft())
            if status == 202:
                answer = orjson.loads(data)
                stats.mappings[answer["status"]] += 1
                stats.acked.add(answer["eventId"])
            else:
                stats.mappings[str(status)] += 1

    await asyncio.gather(*(worker(conn) for conn in conns))


async def _client(conn: Connection, plan: Plan, stats: Stats) -> None:
    while (job := plan.next_job()) is not None:
        if (wait := job.due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        started = time.perf_counter()
        try:
            status, data = await conn.request(job.method, job.path, job.body, job.content_type)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, HttpError):
            stats.statuses["connection"] += 1
            conn.close()
            continue
        stats.latencies.append(time.perf_counter() - started)
        stats.record(job, status, data, plan.workload)


@contextmanager
def quiet_collector() -> Iterator[None]:
    """The garbage collector kept out of the way of the timed phase: what is alive at its
    start (the fleet, the mappings' answers, an earlier step's leftovers) frozen, and the
    youngest generation collected after ``COLLECTOR_THRESHOLDS[0]`` new objects instead of
    700. With Python's defaults a batch of 1,000 cost the load generator 9.8 instead of 6.8
    ms of CPU (the answers and readings in flight outlived the youngest collections), CPU
    taken from the server on a shared box. Restored afterwards."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


# Called at the start and the end of the timed phase (e.g. to read the server's CPU time),
# so that what it measures leaves out the mappings before and the verification after.
Probe = Callable[[], dict[str, float]]


async def drive(config: Config, probe: Probe | None = None) -> tuple[Stats, dict[str, Any]]:
    """Run the load described by ``config``; the stats and the run's figures (with
    ``probed``: ``probe``'s answers at the start and the end of the timed phase)."""
    if config.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {config.mode!r}")
    url = urlsplit(config.url)
    conns = [
        Connection(url.hostname or "127.0.0.1", url.port or 80, config.token)
        for _ in range(config.concurrency)
    ]
    fleet = Fleet(
        meters=config.meters,
        vehicles=config.vehicles,
        prefix=config.prefix,
        seed=config.seed,
        interval_s=config.interval_s,
    )
    stats = Stats()
    start, end = timeline(config, fleet.devices)
    workload = Workload(fleet, start=start, end=end, duplicates=config.duplicates, late=config.late)
    plan = Plan(config, workload, stats)
    try:
        # One at a time, each answered before the next is opened, as clients arriving over
        # time would: opened in one burst, the first worker to wake accepted them all.
        for conn in conns:
            await conn.request("GET", "/health")
        if config.mode != "health" and config.map_vehicles:
            await _map_pairs(conns, fleet, stats)
        probed = {"before": probe()} if probe else None
        with quiet_collector():
            cpu, began = time.process_time(), time.perf_counter()
            plan.began, plan.deadline = began, began + config.duration_s
            await asyncio.gather(*(_client(conn, plan, stats) for conn in conns))
            elapsed = time.perf_counter() - began
            cpu = time.process_time() - cpu
        if probe and probed:
            probed["after"] = probe()
        stats.read_answers()
    finally:
        for conn in conns:
            conn.close()
    figures = summary(config, stats, workload, elapsed=elapsed, cpu=cpu)
    if probed:
        figures["probed"] = probed
    return stats, figures


def percentile(ordered: list[float], share: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def latency_ms(seconds: Iterable[float]) -> dict[str, float]:
    """p50/p95/p99/max of durations in ``seconds``, in milliseconds."""
    ordered = sorted(seconds)
    return {
        name: round(percentile(ordered, share) * 1000, 3)
        for name, share in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
    }


def per_second(count: float, seconds: float) -> float:
    return round(count / seconds, 1) if seconds else 0.0


def summary(
    config: Config, stats: Stats, workload: Workload, *, elapsed: float, cpu: float
) -> dict[str, Any]:
    """The run's figures as a JSON-ready dict."""
    requests = sum(stats.statuses.values())
    acknowledged = stats.items["accepted"] + stats.items["duplicate"]
    ok = {"200", "202", "207"}
    return {
        "config": asdict(config),
        "elapsed_s": round(elapsed, 3),
        "requests": requests,
        "readings": stats.readings_sent,
        "requests_per_s": per_second(requests, elapsed),
        "readings_per_s": per_second(acknowledged, elapsed),
        "latency_ms": latency_ms(stats.latencies),
        "statuses": dict(stats.statuses),
        "errors": {k: v for k, v in stats.statuses.items() if k not in ok},
        "items": dict(stats.items),
        "sent": dict(workload.sent),
        "mappings": dict(stats.mappings),
        "accepted_twice": stats.accepted_twice,
        "duplicate_mismatches": stats.duplicate_mismatches,
        "timeline_exhausted": workload.exhausted,
        "client_cpu_share": round(cpu / elapsed, 3) if elapsed else 0.0,
    }


def verify(dsn: str, event_ids: Iterable[str], chunk: int = 10_000) -> dict[str, int]:
    """Count acknowledged ids missing from ``events`` (lost) or stored more than once (doubled)."""
    ids = sorted(set(event_ids))
    found = doubled = 0
    with psycopg.connect(dsn) as conn:
        for first in range(0, len(ids), chunk):
            for _, count in conn.execute(ACKED_COUNTS, {"ids": ids[first : first + chunk]}):
                found += 1
                doubled += count > 1
    return {"checked": len(ids), "lost": len(ids) - found, "doubled": doubled}


def run(
    config: Config, verify_dsn: str | None = None, probe: Probe | None = None
) -> dict[str, Any]:
    """Drive the load and, given a DSN, verify it; the result as a JSON-ready dict."""
    stats, result = asyncio.run(drive(config, probe))
    result["verify"] = verify(verify_dsn, stats.acked) if verify_dsn else None
    return result


def describe(name: str, result: dict[str, Any]) -> str:
    """One human line for a result."""
    lat = result["latency_ms"]
    line = (
        f"{name}: {result['requests']} requests in {result['elapsed_s']:.1f} s = "
        f"{result['requests_per_s']:.0f} req/s, {result['readings_per_s']:.0f} readings/s; "
        f"latency ms p50 {lat['p50']} p95 {lat['p95']} p99 {lat['p99']} max {lat['max']}"
    )
    if result["errors"]:
        line += f"; errors {result['errors']}"
    if result["items"]:
        line += f"; items {result['items']}"
    if result.get("verify"):
        line += f"; verify {result['verify']}"
    return line


@click.command()
@click.option("--url", required=True, help="Server base URL, e.g. http://127.0.0.1:3000")
@click.option("--mode", type=click.Choice(MODES), default="single", show_default=True)
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--ndjson", is_flag=True, help="Batches as NDJSON instead of a JSON array.")
@click.option("--meters", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--vehicles", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--prefix", default=None, help="Device id prefix [random per run].")
@click.option("--interval", type=click.IntRange(min=1), default=60, show_default=True)
@click.option("--duplicates", type=click.FloatRange(0, 1), default=0.05, show_default=True)
@click.option("--late", type=click.FloatRange(0, 1), default=0.05, show_default=True)
@click.option("--requests", type=click.IntRange(min=1), default=None, help="Stop after N.")
@click.option("--readings", type=click.IntRange(min=1), default=None, help="Stop after N.")
@click.option("--duration", type=click.FloatRange(min=0), default=10.0, show_default=True)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Readings/s across all clients (requests/s for health) [as fast as possible].",
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--token",
    envvar="ENERGY_TOKEN",
    default=None,
    help="Bearer token sent with every request (a server with auth on) [$ENERGY_TOKEN].",
)
@click.option("--no-mappings", is_flag=True, help="Do not map vehicle i to meter i first.")
@click.option("--verify-dsn", default=None, help="Check every acknowledged event id in the DB.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None)
def cli(**options: Any) -> None:
    """Post simulated readings to a running server and report throughput and latency."""
    json_path, verify_dsn = options.pop("json_path"), options.pop("verify_dsn")
    prefix = options.pop("prefix")
    config = Config(
        url=options.pop("url"),
        duration_s=options.pop("duration"),
        interval_s=options.pop("interval"),
        map_vehicles=not options.pop("no_mappings"),
        **({"prefix": prefix} if prefix is not None else {}),
        **options,
    )
    result = run(config, verify_dsn)
    click.echo(describe(config.mode, result))
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    check = result["verify"]
    if check and (check["lost"] or check["doubled"]):
        raise SystemExit(1)


if __name__ == "__main__":
    cli()
