"""Credentials: bearer tokens, roles and what each role may do. Pure code: the randomness
and the server's token key come in as arguments.

A token is ``energy_<token id>_<secret>``: 12 hex digits naming it publicly (in logs,
lists, revocations) and 256 random bits. Only ``token_hash`` of it is ever stored.
"""

from __future__ import annotations

import enum
import hmac
import re
from datetime import datetime

from attrs import frozen

from domain.rules import FieldError, Rejected, check_device_id

TOKEN = re.compile(r"energy_([0-9a-f]{12})_([0-9a-f]{64})")
MAX_LIVE_TOKENS = 2  # per identity: the one in use and its replacement while rotating
IDENTITY = re.compile(r"[A-Za-z0-9._:@-]{1,128}")


class Role(enum.Enum):
    DEVICE = "device"  # posts readings for the devices it is bound to, nothing else
    READER = "reader"  # dashboards: the read API
    AUDITOR = "auditor"  # the event log and the ledger, read only
    OPERATOR = "operator"  # mappings, projections, tokens; may post readings for any device


class Action(enum.Enum):
    INGEST = "ingest"
    MAP = "map"
    READ = "read"
    AUDIT = "audit"
    OPERATE = "operate"  # projection status, token management


ALLOWED: dict[Role, frozenset[Action]] = {
    Role.DEVICE: frozenset({Action.INGEST}),
    Role.READER: frozenset({Action.READ}),
    Role.AUDITOR: frozenset({Action.AUDIT}),
    Role.OPERATOR: frozenset({Action.INGEST, Action.MAP, Action.READ, Action.OPERATE}),
}


@frozen(kw_only=True)
class Principal:
    """Who a request acts as: a token's identity, role and (for devices) its devices."""

    token_id: str
    identity: str
    role: Role
    devices: frozenset[str] = frozenset()

    def may(self, action: Action) -> bool:
        return action in ALLOWED[self.role]

    def may_write_for(self, device_id: str) -> bool:
        """A device token writes for its own devices only; an operator for any."""
        return self.role is Role.OPERATOR or device_id in self.devices


@frozen(kw_only=True)
class IssueToken:
    identity: str
    role: str
    devices: tuple[str, ...] = ()


@frozen(kw_only=True)
class TokenIssued:
    """A token was created; the event carries its public id, never its secret."""

    token_id: str
    identity: str
    role: str
    devices: tuple[str, ...]
    issued_by: str
    issued_at: datetime


@frozen(kw_only=True)
class TokenRevoked:
    token_id: str
    revoked_by: str
    revoked_at: datetime


def token_hash(key: bytes, token_id: str, secret: str) -> bytes:
    """What the database keeps of a token: a keyed hash, useless without the server's key."""
    return hmac.new(key, f"{token_id}.{secret}".encode(), "sha256").digest()


def parse_token(token: str) -> tuple[str, str] | None:
    """``(token id, secret)`` of a well-formed token, else ``None``."""
    match = TOKEN.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None


def issue_token(
    command: IssueToken,
    *,
    random_hex: str,
    live_tokens: int,
    issued_by: str,
    now: datetime,
) -> tuple[TokenIssued, str]:
    """Decide a new token from 38 random bytes (as hex); the event and the token itself.

    Refused (``Rejected``) for an unknown role, a device role without devices or devices
    for another role, ids of the wrong form, or an identity that already holds the most
    live tokens it may.
    """
    errors: list[FieldError] = []
    if IDENTITY.fullmatch(command.identity) is None:
        errors.append(
            FieldError(field="identity", message="must be 1 to 128 of A-Z a-z 0-9 . _ : @ -")
        )
    roles = {role.value for role in Role}
    if command.role not in roles:
        errors.append(FieldError(field="role", message=f"must be one of {sorted(roles)}"))
    if command.role == Role.DEVICE.value and not command.devices:
        errors.append(FieldError(field="devices", message="a device token needs its devices"))
    if command.devices and command.role != Role.DEVICE.value:
        errors.append(FieldError(field="devices", message="only device tokens are bound"))
    for device in command.devices:
        check_device_id("devices", device, errors)
    if live_tokens >= MAX_LIVE_TOKENS:
        errors.append(
            FieldError(
                field="identity",
                message=f"already holds {live_tokens} live tokens; revoke one first",
            )
        )
    if errors:
        raise Rejected(errors)
    token_id, secret = random_hex[:12], random_hex[12:76]
    event = TokenIssued(
        token_id=token_id,
        identity=command.identity,
        role=command.role,
        devices=tuple(sorted(set(command.devices))),
        issued_by=issued_by,
        issued_at=now,
    )
    return event, f"energy_{token_id}_{secret}"
