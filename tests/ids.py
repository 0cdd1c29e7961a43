"""Fresh device ids, so tests sharing a database never see each other's readings."""

from __future__ import annotations

import uuid


def fresh_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
