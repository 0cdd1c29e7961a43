"""The audit ledger's checkpoints: what is signed, how, and the file they are kept in
outside the database. Pure code; the ledger itself is built in ``projections.ledger``."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO

from attrs import frozen


@frozen(kw_only=True)
class Checkpoint:
    seq: int
    transaction_id: int
    position: int
    chain_hash: bytes
    signature: bytes
    key_id: str
    created_at: datetime | None = None


def key_id(key: bytes) -> str:
    """A name for a key that reveals nothing of it."""
    return hashlib.sha256(b"energy-ledger-key:" + key).hexdigest()[:16]


def sign(key: bytes, seq: int, position: int, chain_hash: bytes) -> bytes:
    return hmac.new(key, f"{seq}:{position}:{chain_hash.hex()}".encode(), "sha256").digest()


def write_checkpoints(found: Iterable[Checkpoint], out: IO[str]) -> None:
    """Checkpoints as NDJSON, hashes and signatures in hex: a file to keep elsewhere."""
    for checkpoint in found:
        record = {
            "seq": checkpoint.seq,
            "transactionId": checkpoint.transaction_id,
            "position": checkpoint.position,
            "chainHash": checkpoint.chain_hash.hex(),
            "signature": checkpoint.signature.hex(),
            "keyId": checkpoint.key_id,
            "createdAt": checkpoint.created_at.isoformat() if checkpoint.created_at else None,
        }
        out.write(json.dumps(record) + "\n")


def read_checkpoints(lines: Iterable[str]) -> Iterator[Checkpoint]:
    """The checkpoints ``write_checkpoints`` wrote."""
    for line in lines:
        if not line.strip():
            continue
        record = json.loads(line)
        yield Checkpoint(
            seq=int(record["seq"]),
            transaction_id=int(record["transactionId"]),
            position=int(record["position"]),
            chain_hash=bytes.fromhex(record["chainHash"]),
            signature=bytes.fromhex(record["signature"]),
            key_id=str(record["keyId"]),
        )
