"""``ledger``: the tamper-evident audit chain over the event log, and its verification.

Every event, in commit-safe order, is chained into a running SHA-256 (see
``migrations/0010_ledger.sql`` for the exact record). The projection writes each event's
chain value to ``ledger_entries`` and a signed checkpoint every ``every`` events, and at
least once a minute while events arrive. ``verify`` replays the log and reports the first
place where content, order or count stops matching what was chained and signed.

Building and checking share one definition of the record (``RECORDS`` and ``LOG``), so the
two cannot drift apart.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
from attrs import frozen

from domain.ledger import Checkpoint, key_id, sign
from projections.runtime import Batch

ZERO = bytes(32)

# The records of one batch: the transaction id (for checkpoints, not hashed), then the
# hashed record in COPY text format.
RECORDS = """
COPY (
    SELECT transaction_id, event_id, position, stream_id, event_type, schema_version, payload
    FROM events
    WHERE (transaction_id, position) > (%(after_tx)s::xid8, %(after_pos)s)
      AND (transaction_id, position) <= (%(upto_tx)s::xid8, %(upto_pos)s)
      AND transaction_id BETWEEN %(after_tx)s::xid8 AND %(upto_tx)s::xid8  -- see 0002
    ORDER BY transaction_id, position
) TO STDOUT
"""
# The whole log behind the fence, for verification: the same columns in the same order.
LOG = """
COPY (
    SELECT transaction_id, event_id, position, stream_id, event_type, schema_version, payload
    FROM events
    WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY transaction_id, position
) TO STDOUT
"""
HEAD = "SELECT seq, chain_hash FROM ledger_entries ORDER BY seq DESC LIMIT 1"
SINCE_CHECKPOINT = "SELECT extract(epoch FROM now() - max(created_at)) FROM ledger_checkpoints"
WRITE_ENTRIES = "COPY ledger_entries (seq, position, chain_hash) FROM STDIN"
WRITE_CHECKPOINT = """
INSERT INTO ledger_checkpoints (seq, transaction_id, position, chain_hash, signature, key_id)
VALUES (%(seq)s, %(transaction_id)s::text::xid8, %(position)s, %(chain_hash)s, %(signature)s,
        %(key_id)s)
"""
ENTRIES = """
COPY (SELECT seq, position, encode(chain_hash, 'hex') FROM ledger_entries ORDER BY seq) TO STDOUT
"""


def split(line: bytes) -> tuple[int, bytes, int]:
    """(transaction id, hashed record, position) of one COPY line of ``RECORDS``/``LOG``."""
    transaction_id, record = line.rstrip(b"\n").split(b"\t", 1)
    position = int(record.split(b"\t", 2)[1])
    return int(transaction_id), record, position


class LedgerProjection:
    """Chains the events of each batch; ``key`` signs the checkpoints."""

    name = "ledger"
    tables = ("ledger_entries", "ledger_checkpoints")

    def __init__(self, key: bytes, *, every: int = 1000, at_least_every: float = 60.0) -> None:
        self._key, self._key_id = key, key_id(key)
        self._every, self._at_least_every = every, at_least_every

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        """Nothing to do ahead of time."""

    def apply(self, conn: psycopg.Connection[Any], batch: Batch) -> None:
        cursor = conn.cursor()
        head = cursor.execute(HEAD).fetchone()
        seq, chain = (int(head[0]), bytes(head[1])) if head else (0, ZERO)
        since = cursor.execute(SINCE_CHECKPOINT).fetchone()
        overdue = since is None or since[0] is None or since[0] >= self._at_least_every
        entries: list[tuple[int, int, bytes]] = []
        checkpoints: list[dict[str, Any]] = []
        last: tuple[int, int] | None = None
        with cursor.copy(RECORDS, batch.params) as copy:
            for line in copy:
                transaction_id, record, position = split(bytes(line))
                chain = hashlib.sha256(chain + record).digest()
                seq += 1
                entries.append((seq, position, chain))
                last = (transaction_id, position)
                if seq % self._every == 0:
                    checkpoints.append(self._checkpoint(seq, transaction_id, position, chain))
        if last is None:
            return
        if overdue and (not checkpoints or checkpoints[-1]["seq"] != seq):
            checkpoints.append(self._checkpoint(seq, last[0], last[1], chain))
        with cursor.copy(WRITE_ENTRIES) as copy:
            for entry in entries:
                copy.write_row(entry)
        cursor.executemany(WRITE_CHECKPOINT, checkpoints)

    def _checkpoint(
        self, seq: int, transaction_id: int, position: int, chain: bytes
    ) -> dict[str, Any]:
        return {
            "seq": seq,
            "transaction_id": str(transaction_id),
            "position": position,
            "chain_hash": chain,
            "signature": sign(self._key, seq, position, chain),
            "key_id": self._key_id,
        }


@frozen(kw_only=True)
class Mismatch:
    """The first place where the log stops matching the ledger, and how."""

    kind: str  # content, order, missing, checkpoint, signature
    seq: int
    position: int
    detail: str


@frozen(kw_only=True)
class Verification:
    events: int  # events read from the log (behind the fence)
    chained: int  # of those, how many the ledger had chained
    checkpoints: int  # checkpoints compared (stored and exported)
    mismatch: Mismatch | None

    @property
    def ok(self) -> bool:
        return self.mismatch is None


def _entries(conn: psycopg.Connection[Any]) -> Iterator[tuple[int, int, bytes]]:
    with conn.cursor().copy(ENTRIES) as copy:
        for line in copy:
            seq, position, chain = bytes(line).rstrip(b"\n").split(b"\t")
            yield int(seq), int(position), bytes.fromhex(chain.decode())


def _log(conn: psycopg.Connection[Any]) -> Iterator[tuple[int, bytes, int]]:
    with conn.cursor().copy(LOG) as copy:
        for line in copy:
            yield split(bytes(line))


def verify(
    log_conn: psycopg.Connection[Any],
    ledger_conn: psycopg.Connection[Any],
    key: bytes,
    stored: Iterable[Checkpoint],
    exported: Iterable[Checkpoint] = (),
    progress: Any = None,
) -> Verification:
    """Replay the log, recompute the chain, compare it with the ledger's entries, with its
    ``stored`` signed checkpoints and with ``exported`` ones kept elsewhere; the first
    mismatch. ``progress``, when given, is called with the number of events read so far.
    """
    stored = list(stored)
    outside = list(exported)
    by_seq: dict[int, list[tuple[str, Checkpoint]]] = {}
    for source, given in (("stored", stored), ("exported", outside)):
        for checkpoint in given:
            by_seq.setdefault(checkpoint.seq, []).append((source, checkpoint))
    entries = _entries(ledger_conn)
    chain, seq, compared, chained = ZERO, 0, 0, 0
    last_good = (0, 0)  # seq and position of the last checkpoint that held

    def found(kind: str, detail: str, position: int, at: int | None = None) -> Verification:
        """The mismatch at event #``at`` (the event just read, by default)."""
        return Verification(
            events=seq,
            chained=chained,
            checkpoints=compared,
            mismatch=Mismatch(
                kind=kind, seq=seq if at is None else at, position=position, detail=detail
            ),
        )

    for _, record, position in _log(log_conn):
        seq += 1
        chain = hashlib.sha256(chain + record).digest()
        if progress is not None and seq % 100_000 == 0:
            progress(seq)
        entry = next(entries, None)
        if entry is not None:
            chained += 1
            _, expected_position, expected_chain = entry
            if expected_position != position:
                where = min(expected_position, position)
                return found(
                    "order",
                    f"the ledger's event #{seq} is at position {expected_position}, the log's"
                    f" is at {position}: an event was removed, added or moved at {where}",
                    where,
                )
            if expected_chain != chain:
                return found(
                    "content",
                    f"the event at position {position} is not what was recorded",
                    position,
                )
        for source, checkpoint in by_seq.get(seq, ()):
            compared += 1
            interval = f"between positions {last_good[1]} (exclusive) and {checkpoint.position}"
            if checkpoint.position != position or checkpoint.chain_hash != chain:
                return found(
                    "checkpoint",
                    f"the {source} checkpoint #{seq} does not match the log: it changed {interval}",
                    checkpoint.position,
                )
            if not hmac.compare_digest(
                checkpoint.signature, sign(key, seq, checkpoint.position, checkpoint.chain_hash)
            ):
                return found(
                    "signature",
                    f"the {source} checkpoint #{seq} is not signed by this key"
                    f" ({checkpoint.key_id}): the log and ledger were rewritten {interval}",
                    checkpoint.position,
                )
        if seq in by_seq:
            last_good = (seq, position)
    leftover = next(entries, None)
    if leftover is not None:
        extra_seq, extra_position, _ = leftover
        return found(
            "missing",
            f"the log ends after event #{seq}; the ledger chained event"
            f" #{extra_seq} at position {extra_position}: events were removed from there",
            extra_position,
            at=extra_seq,
        )
    beyond = min((c for c in (*stored, *outside) if c.seq > seq), key=lambda c: c.seq, default=None)
    if beyond is not None:
        return found(
            "missing",
            f"a checkpoint covers event #{beyond.seq} at position"
            f" {beyond.position}, but the log ends after event #{seq}",
            beyond.position,
            at=beyond.seq,
        )
    return Verification(events=seq, chained=chained, checkpoints=compared, mismatch=None)
