"""The audit trail: append-only records of user actions, chained by hashes.

`audit_record` is the only writer. Each entry stores `prev_hash` (the previous entry's `entry_hash`) and
`entry_hash`, a SHA-256 over a canonical JSON of its content including `prev_hash`. Editing, inserting or
deleting a row in the middle of the chain therefore breaks it at that row, which `audit_verify` reports.

Appends are serialized so that the chain stays linear: on PostgreSQL by a transaction-scoped advisory lock,
on SQLite by the IMMEDIATE transaction that already holds the database's write lock.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from omlpy_dashboard.client_address import client_address
from omlpy_dashboard.fastsql import insert_one

from .models import AuditEntry

GENESIS_HASH = "0" * 64
# An arbitrary constant naming the audit chain's advisory lock on PostgreSQL.
_ADVISORY_LOCK_KEY = 0x0A0D17C4A1


class AuditAction:
    """The actions the trail records (the audit page's filter lists them)."""

    SUBMIT = "submit"
    CANCEL = "cancel"
    RERUN = "rerun"
    CLONE = "clone"
    RESULT_VIEW = "result_view"
    RESULT_DOWNLOAD = "result_download"
    LOGIN = "login"
    LOGOUT = "logout"
    LOGIN_FAILED = "login_failed"
    LOGIN_THROTTLED = "login_throttled"
    TOKEN_CREATED = "token_created"  # noqa: S105 - an action name
    TOKEN_REVOKED = "token_revoked"  # noqa: S105 - an action name
    CONNECTION_CREATED = "connection_created"
    CONNECTION_CHANGED = "connection_changed"
    ROLE_ADDED = "role_added"
    ROLE_CHANGED = "role_changed"
    ROLE_REMOVED = "role_removed"
    TEAM_CREATED = "team_created"
    TEAM_CHANGED = "team_changed"
    USER_CREATED = "user_created"
    USER_CHANGED = "user_changed"
    TIMEZONE_CHANGED = "timezone_changed"
    PIN = "pin"
    UNPIN = "unpin"
    RETENTION_CHANGED = "retention_changed"

    @classmethod
    def all(cls) -> list[str]:
        return sorted(value for name, value in vars(cls).items() if name.isupper())


def _normalized_ip(ip: str | None) -> str | None:
    """The address as the database gives it back, so that the hash written is the hash verified."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address)


def _canonical(value: Any) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _timestamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def entry_content(entry: AuditEntry) -> dict[str, Any]:
    """What the hash covers. `actor_id` is left out: deleting a user sets it to NULL, `actor_username` stays."""
    return {
        "at": _timestamp(entry.at),
        "actor_username": entry.actor_username,
        "action": entry.action,
        "ip": entry.ip or None,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
    }


def compute_hash(entry: AuditEntry) -> str:
    return hashlib.sha256(_canonical(entry_content(entry)).encode()).hexdigest()


def _lock_chain() -> None:
    """Serialize appends until the surrounding transaction ends."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_LOCK_KEY])
    elif connection.vendor != "sqlite":  # SQLite's IMMEDIATE transaction already holds the write lock
        AuditEntry.objects.select_for_update().order_by("-id").values_list("id", flat=True).first()


def audit_record(
    *,
    action: str,
    actor=None,
    request=None,
    target_type: str = "",
    target_id: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry to the chain. Never put secrets in `details`."""
    if actor is None and request is not None and getattr(request, "user", None) is not None:
        actor = request.user if request.user.is_authenticated else None
    # Stored exactly as hashed: JSON round-tripped, strings cut to their column sizes.
    entry = AuditEntry(
        actor=actor,
        actor_username=(getattr(actor, "username", "") or "")[:150],
        action=action[:40],
        ip=_normalized_ip(client_address(request)),
        target_type=target_type[:40],
        target_id=str(target_id)[:64],
        details=json.loads(_canonical(details or {})),
    )
    # Part of the caller's transaction when there is one (no savepoint: a failed append fails the whole write).
    with transaction.atomic(savepoint=False):
        _lock_chain()
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT entry_hash FROM {AuditEntry._meta.db_table} ORDER BY id DESC LIMIT 1")  # noqa: S608
            row = cursor.fetchone()
        last = row[0] if row else None
        entry.prev_hash = last or GENESIS_HASH
        # Taken under the lock, so that time order and chain order agree.
        entry.at = timezone.now()
        entry.entry_hash = compute_hash(entry)
        insert_one(entry)
    return entry


# --- Verification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainBreak:
    entry_id: int
    reason: str


@dataclass(frozen=True)
class ChainReport:
    checked: int
    head: str
    broken: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def _entries_in_chain_order(batch: int = 2000) -> Iterator[AuditEntry]:
    last_id = 0
    while True:
        rows = list(AuditEntry.objects.filter(id__gt=last_id).order_by("id")[:batch])
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id


def audit_verify_chain() -> ChainReport:
    """Walk the chain from the first entry; stop at the first entry that does not hold."""
    expected_prev = GENESIS_HASH
    checked = 0
    for entry in _entries_in_chain_order():
        if entry.prev_hash != expected_prev:
            reason = "its previous-entry hash does not match the entry before it (an entry was removed or altered)"
            return ChainReport(checked, expected_prev, ChainBreak(entry.id, reason))
        if compute_hash(entry) != entry.entry_hash:
            return ChainReport(checked, expected_prev, ChainBreak(entry.id, "its content does not match its hash"))
        expected_prev = entry.entry_hash
        checked += 1
    return ChainReport(checked, expected_prev, None)
