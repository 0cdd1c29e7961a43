"""The ledger's signed checkpoints, as stored (for auditors, and for ``events verify``)."""

from __future__ import annotations

from typing import Any

import psycopg

from domain.ledger import Checkpoint

CHECKPOINTS = """
SELECT seq, transaction_id::text, position, chain_hash, signature, key_id, created_at
FROM ledger_checkpoints ORDER BY seq
"""


def checkpoints(conn: psycopg.Connection[Any]) -> list[Checkpoint]:
    """Every checkpoint the ledger has signed, in chain order."""
    return [
        Checkpoint(
            seq=seq,
            transaction_id=int(tx),
            position=position,
            chain_hash=bytes(chain),
            signature=bytes(signature),
            key_id=signed_by,
            created_at=created_at,
        )
        for seq, tx, position, chain, signature, signed_by, created_at in conn.execute(CHECKPOINTS)
    ]
