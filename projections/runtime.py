"""The projector runtime: batches of the log, applied with their checkpoint in one transaction.

A projection is a name and ``apply(conn, batch)``: code that turns the events of one batch
(the range ``(after, upto]`` of commit-safe order) into set-based SQL. The runtime

1. locks the projection's checkpoint row (``FOR UPDATE SKIP LOCKED``: a second projector
   process on the same projection skips the round instead of applying the batch twice);
2. finds the batch's upper bound, at most ``batch_size`` events on, behind the fence (only
   transactions older than the oldest one still running, see ``eventstore.store``);
3. calls ``apply`` and moves the checkpoint to the upper bound, in the same transaction.

A crash anywhere rolls back both, so nothing is repeated and nothing is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import psycopg
from attrs import frozen
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

from eventstore import START, Checkpoint

log = logging.getLogger(__name__)

ENSURE_CHECKPOINT = """
INSERT INTO projection_checkpoints (name) VALUES (%(name)s) ON CONFLICT (name) DO NOTHING
"""
LOCK_CHECKPOINT = """
SELECT transaction_id::text, position FROM projection_checkpoints
WHERE name = %(name)s
FOR UPDATE SKIP LOCKED
"""
# The last event of the next batch: at most `limit` events after the checkpoint, all from
# transactions that can no longer commit anything lower (see eventstore.store.READ_AFTER).
BATCH_END = """
SELECT transaction_id::text, position, count(*) OVER () FROM (
    SELECT transaction_id, position FROM events
    WHERE (transaction_id, position) > (%(after_tx)s::xid8, %(after_pos)s)
      AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY transaction_id, position
    LIMIT %(limit)s
) batch
ORDER BY transaction_id DESC, position DESC
LIMIT 1
"""
# Committed events after the checkpoint, whether or not the fence lets them through yet.
PENDING = """
SELECT EXISTS (
    SELECT 1 FROM events e, projection_checkpoints c
    WHERE c.name = %(name)s AND (e.transaction_id, e.position) > (c.transaction_id, c.position)
      AND e.transaction_id >= c.transaction_id  -- lets the index see the bound
)
"""
SAVE_CHECKPOINT = """
UPDATE projection_checkpoints
SET transaction_id = %(upto_tx)s::xid8, position = %(upto_pos)s, updated_at = now()
WHERE name = %(name)s
"""
READ_CHECKPOINT = """
SELECT transaction_id::text, position FROM projection_checkpoints WHERE name = %(name)s
"""
# Whether the event at `position` is at or behind the checkpoint in commit-safe order.
REACHED = """
SELECT (e.transaction_id, e.position) <= (c.transaction_id, c.position)
FROM events e, projection_checkpoints c
WHERE e.position = %(position)s AND c.name = %(name)s
"""


@frozen(kw_only=True)
class Batch:
    """The events ``(after, upto]`` of commit-safe order, ``size`` of them."""

    after: Checkpoint
    upto: Checkpoint
    size: int

    @property
    def params(self) -> dict[str, Any]:
        """The bounds as the named parameters every projection's SQL uses."""
        return {
            "after_tx": str(self.after.transaction_id),
            "after_pos": self.after.position,
            "upto_tx": str(self.upto.transaction_id),
            "upto_pos": self.upto.position,
        }


class Projection(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def tables(self) -> tuple[str, ...]:
        """The read model's tables: what a rebuild builds anew."""

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        """Housekeeping run at start and every hour (e.g. partitions ahead of time)."""

    def apply(self, conn: psycopg.Connection[Any], batch: Batch) -> None: ...


@frozen(kw_only=True)
class SqlProjection:
    """A projection that is nothing but set-based statements over the batch bounds."""

    name: str
    tables: tuple[str, ...]
    statements: tuple[str, ...]
    housekeeping: tuple[str, ...] = ()

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            for statement in self.housekeeping:
                conn.execute(statement)

    def apply(self, conn: psycopg.Connection[Any], batch: Batch) -> None:
        params = batch.params
        for statement in self.statements:
            conn.execute(statement, params)


class Periodic(Protocol):
    """Work done every ``interval`` seconds rather than per batch of events."""

    @property
    def name(self) -> str: ...

    @property
    def interval(self) -> float: ...

    def run(self, conn: psycopg.Connection[Any]) -> None: ...


# One process at a time runs a periodic job; the others find the lock taken and skip it.
TRY_JOB_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('energy-job:' || %(name)s))"


def run_periodic(conn: psycopg.Connection[Any], job: Periodic) -> bool:
    """Run ``job`` once in a transaction of its own; ``False`` when another process is."""
    with conn.transaction():
        row = conn.execute(TRY_JOB_LOCK, {"name": job.name}).fetchone()
        if not (row and row[0]):
            return False
        job.run(conn)
        return True


def _checkpoint(row: tuple[Any, ...]) -> Checkpoint:
    return Checkpoint(transaction_id=int(row[0]), position=int(row[1]))


def ensure_checkpoints(conn: psycopg.Connection[Any], projections: Sequence[Projection]) -> None:
    with conn.transaction():
        for projection in projections:
            conn.execute(ENSURE_CHECKPOINT, {"name": projection.name})


def run_batch(conn: psycopg.Connection[Any], projection: Projection, batch_size: int) -> int | None:
    """Apply the next batch of ``projection``; the number of events it held (0: caught up).

    ``None`` when another process holds the projection right now. ``conn`` must hold no
    transaction: the batch commits on its own, and a batch nested in a longer transaction
    would keep that transaction's id holding back the commit-safe fence.
    """
    if conn.info.transaction_status is not TransactionStatus.IDLE:
        raise RuntimeError("run_batch needs a connection with no transaction open")
    with conn.transaction():
        return apply_next(conn, projection, batch_size)


def apply_next(
    conn: psycopg.Connection[Any], projection: Projection, batch_size: int
) -> int | None:
    """``run_batch`` inside the caller's transaction: lock the checkpoint row, apply the next
    batch, move the checkpoint. The caller commits (or rolls back) all of it."""
    cursor = conn.cursor(row_factory=tuple_row)
    row = cursor.execute(LOCK_CHECKPOINT, {"name": projection.name}).fetchone()
    if row is None:
        return None
    after = _checkpoint(row)
    end = cursor.execute(
        BATCH_END,
        {
            "after_tx": str(after.transaction_id),
            "after_pos": after.position,
            "limit": batch_size,
        },
    ).fetchone()
    if end is None:
        return 0
    batch = Batch(after=after, upto=_checkpoint(end), size=int(end[2]))
    projection.apply(conn, batch)
    cursor.execute(SAVE_CHECKPOINT, {"name": projection.name, **batch.params})
    return batch.size


def catch_up(conn: psycopg.Connection[Any], projection: Projection, batch_size: int = 5000) -> int:
    """Apply batches until none is left behind the fence; the number of events applied."""
    total = 0
    while applied := run_batch(conn, projection, batch_size):
        total += applied
    return total


def has_pending(conn: psycopg.Connection[Any], name: str) -> bool:
    """Whether committed events wait after the checkpoint (perhaps held back by the fence)."""
    row = conn.execute(PENDING, {"name": name}).fetchone()
    return bool(row and row[0])


def checkpoint_of(conn: psycopg.Connection[Any], name: str) -> Checkpoint:
    row = conn.cursor(row_factory=tuple_row).execute(READ_CHECKPOINT, {"name": name}).fetchone()
    return _checkpoint(row) if row else START


def has_reached(conn: psycopg.Connection[Any], name: str, position: int) -> bool:
    """Whether projection ``name`` has applied the event at ``position``."""
    row = conn.execute(REACHED, {"name": name, "position": position}).fetchone()
    return bool(row and row[0])


def projector_session(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """``conn`` set up as every projector session is (the projector's and a rebuild's)."""
    # Every batch is an explicit transaction; between batches the session must hold none,
    # or its transaction id would hold back the commit-safe fence of every reader.
    conn.autocommit = True
    # Read models are derived data and each batch commits with its checkpoint, so a batch
    # lost in a server crash is lost together with its checkpoint and simply applied again:
    # waiting for the WAL flush would buy nothing.
    conn.execute("SET synchronous_commit = off")
    # After a few executions a prepared statement may switch to a generic plan, and a
    # generic plan cannot see how narrow a batch's (transaction_id, position) range is: it
    # scans the whole event table for every batch. Planning with the values costs far less
    # than the thousands of events a batch applies.
    conn.execute("SET plan_cache_mode = force_custom_plan")
    # A batch is a few thousand rows reached by index: compiling it (JIT) or starting
    # parallel workers costs more than it saves, and misestimates make both likelier.
    conn.execute("SET jit = off")
    conn.execute("SET max_parallel_workers_per_gather = 0")
    return conn


class Projector:
    """Runs several projections in one process: a thread each, woken by NOTIFY or a poll.

    Each thread owns one connection. A listener thread turns ``NOTIFY energy_events`` into a
    wake-up of every projection thread; the poll interval bounds the delay when a
    notification is lost (or was sent while a thread was busy). After a wake-up a thread
    lingers a few milliseconds so that one batch gathers the commits of many writers
    instead of one transaction per notification and projection.

    An error never ends a thread: it is logged, and the batch is retried after a pause
    that doubles up to ``MAX_BACKOFF`` while the error persists (its transaction was rolled
    back, so nothing of it was applied).
    """

    MAX_BACKOFF = 30.0
    LISTEN_TICK = 0.5
    HELD_RETRY = 0.005

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        projections: Sequence[Projection],
        *,
        periodic: Sequence[Periodic] = (),
        batch_size: int = 5000,
        poll_interval: float = 1.0,
        linger: float = 0.02,
        housekeeping_interval: float = 3600.0,
    ) -> None:
        self._connect = connect
        self._projections = list(projections)
        self._periodic = list(periodic)
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._linger = linger
        self._housekeeping_interval = housekeeping_interval
        self._wake = {p.name: threading.Event() for p in self._projections}

    def run(self, stop: threading.Event) -> None:
        """Project until ``stop`` is set; each thread finishes its current batch first."""
        with self._session() as conn:
            ensure_checkpoints(conn, self._projections)
        threads = [threading.Thread(target=self._listen, args=(stop,), name="listen")]
        threads += [
            threading.Thread(target=self._loop, args=(p, stop), name=p.name)
            for p in self._projections
        ]
        threads += [
            threading.Thread(target=self._every, args=(job, stop), name=job.name)
            for job in self._periodic
        ]
        for thread in threads:
            thread.start()
        stop.wait()
        for event in self._wake.values():
            event.set()
        for thread in threads:
            thread.join()

    def _session(self) -> psycopg.Connection[Any]:
        return projector_session(self._connect())

    def _loop(self, projection: Projection, stop: threading.Event) -> None:
        wake = self._wake[projection.name]
        backoff = self._poll_interval
        while not stop.is_set():
            try:
                with self._session() as conn:
                    housekept = float("-inf")
                    # Behind the fence, retry after a linger's time (or the minimum).
                    retry = max(self._linger, self.HELD_RETRY)
                    held = retry
                    while not stop.is_set():
                        if time.monotonic() - housekept > self._housekeeping_interval:
                            projection.prepare(conn)
                            housekept = time.monotonic()
                        wake.clear()
                        applied = run_batch(conn, projection, self._batch_size)
                        backoff = self._poll_interval
                        if applied is not None and applied >= self._batch_size:
                            continue
                        if applied is not None and has_pending(conn, projection.name):
                            # Committed events wait behind the fence, held by a transaction
                            # that may not notify when it ends (another projector's batch,
                            # another application's work): look again soon, and back off
                            # only while that brings nothing.
                            held = retry if applied else min(held * 2, self._poll_interval)
                            if wake.wait(held) and not stop.is_set():
                                stop.wait(self._linger)
                            continue
                        held = retry
                        if wake.wait(self._poll_interval) and not stop.is_set():
                            # Woken by a commit: let the commits of other writers join it.
                            stop.wait(self._linger)
            except psycopg.OperationalError as exc:
                log.warning("%s: database unavailable (%s); retrying", projection.name, exc)
                stop.wait(backoff)
                backoff = min(backoff * 2, self.MAX_BACKOFF)
            except Exception:
                log.exception("%s: batch failed; retrying in %.3g s", projection.name, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, self.MAX_BACKOFF)

    def _every(self, job: Periodic, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with self._session() as conn:
                    while not stop.is_set():
                        run_periodic(conn, job)
                        stop.wait(job.interval)
            except Exception:
                log.exception("%s: failed; retrying in %.3g s", job.name, job.interval)
                stop.wait(job.interval)

    def _listen(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with self._session() as conn:
                    conn.execute("LISTEN energy_events")
                    while not stop.is_set():
                        # A short timeout only so that ``stop`` is noticed promptly.
                        for _ in conn.notifies(timeout=self.LISTEN_TICK, stop_after=1):
                            for event in self._wake.values():
                                event.set()
            except psycopg.OperationalError as exc:
                log.warning("listener: database unavailable (%s); retrying", exc)
                stop.wait(self._poll_interval)
