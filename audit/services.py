"""The audit trail: append-only records of user actions, chained and signed.

`audit_record` is the only writer. Each entry stores `prev_hash` (the previous entry's `entry_hash`) and
`entry_hash`, an HMAC-SHA256 under the first of AUDIT_HMAC_KEYS over a canonical JSON of its content, including
`prev_hash` and `key_id` (which key signed it: a digest's prefix, never the key). The keys are never in the
database, so whoever can write the table can neither edit, insert nor delete an entry in the middle of the chain
without `audit_verify` naming it, nor re-sign the chain. Removing the newest entries leaves a shorter chain that
holds: the signed checkpoints of audit.checkpoints, kept outside the database, catch that.

Entries written before the chain was keyed have an empty `key_id` and a plain SHA-256 as `entry_hash`; they
verify as before. The first keyed write after them adds a `chain_keyed` anchor whose HMAC covers their head,
so they cannot be rewritten either once signed entries follow. After a signed entry an unsigned one is a break.

Appends are serialized so that the chain stays linear: on PostgreSQL by a transaction-scoped advisory lock,
on SQLite by the IMMEDIATE transaction that already holds the database's write lock.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from omlpy_dashboard.client_address import client_address
from omlpy_dashboard.fastsql import advisory_xact_lock, audit_head, insert_one
from omlpy_dashboard.secrets_check import audit_key_id

from .models import AuditEntry

GENESIS_HASH = "0" * 64
# An arbitrary constant naming the audit chain's advisory lock on PostgreSQL.
_ADVISORY_LOCK_KEY = 0x0A0D17C4A1


class AuditAction:
    """The actions the trail records (the audit page's filter lists them)."""

    SUBMIT = "submit"
    # A worker sent the job to OML: the script that ran (name, sha256, OML's date for it).
    SENT_TO_OML = "sent_to_oml"
    CANCEL = "cancel"
    RERUN = "rerun"
    CLONE = "clone"
    RESULT_VIEW = "result_view"
    RESULT_DOWNLOAD = "result_download"
    HISTORY_EXPORT = "history_export"
    LOGIN = "login"
    LOGOUT = "logout"
    LOGIN_FAILED = "login_failed"
    LOGIN_THROTTLED = "login_throttled"
    LOGIN_UNLOCKED = "login_unlocked"
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
    # Single sign-on and deactivation (accounts.sso, accounts.services)
    LOGIN_REFUSED = "login_refused"
    USER_DEACTIVATED = "user_deactivated"
    USER_REACTIVATED = "user_reactivated"
    SESSIONS_ENDED = "sessions_ended"
    # Written once, by the first keyed write after unkeyed entries: the start of the signed chain.
    CHAIN_KEYED = "chain_keyed"
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
    """What the hash covers. `actor_id` is left out: deleting a user sets it to NULL, `actor_username` stays.
    `key_id` is covered when there is one; an unkeyed entry's content is exactly what it always was."""
    content = {
        "at": _timestamp(entry.at),
        "actor_username": entry.actor_username,
        "action": entry.action,
        "ip": entry.ip or None,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
    }
    key_id = getattr(entry, "key_id", "")
    if key_id:
        content["key_id"] = key_id
    return content


@dataclass(frozen=True)
class KeyRing:
    """AUDIT_HMAC_KEYS by key id: the first signs, all verify."""

    signing_id: str
    keys: dict[str, bytes] = field(repr=False)


@lru_cache(maxsize=4)
def _key_ring(keys: tuple[str, ...]) -> KeyRing:
    return KeyRing(signing_id=audit_key_id(keys[0]), keys={audit_key_id(key): key.encode() for key in keys})


def key_ring() -> KeyRing:
    return _key_ring(tuple(settings.AUDIT_HMAC_KEYS))


def unkeyed_hash(entry: AuditEntry) -> str:
    return hashlib.sha256(_canonical(entry_content(entry)).encode()).hexdigest()


def keyed_hash(entry: AuditEntry, key: bytes) -> str:
    return hmac.new(key, _canonical(entry_content(entry)).encode(), hashlib.sha256).hexdigest()


def compute_hash(entry: AuditEntry) -> str:
    """The hash `entry` should carry: an HMAC under the key its `key_id` names, a SHA-256 without one.
    Raises KeyError for a key id AUDIT_HMAC_KEYS does not list."""
    key_id = getattr(entry, "key_id", "")  # absent from the model of migrations before jobs 0005
    return keyed_hash(entry, key_ring().keys[key_id]) if key_id else unkeyed_hash(entry)


def _lock_chain() -> None:
    """Serialize appends until the surrounding transaction ends."""
    if connection.vendor == "postgresql":
        advisory_xact_lock(_ADVISORY_LOCK_KEY)
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
        row = audit_head(AuditEntry)
        ring = key_ring()
        head = row[0] if row else GENESIS_HASH
        if row and not row[1]:
            # The newest entry is unkeyed: sign the old head once, so that nothing before it can be rewritten.
            anchor = AuditEntry(
                action=AuditAction.CHAIN_KEYED, target_type="audit_chain", details={"unkeyed_head": head}
            )
            head = _append(anchor, head, ring)
        _append(entry, head, ring)
    return entry


def _append(entry: AuditEntry, prev_hash: str, ring: KeyRing) -> str:
    entry.prev_hash = prev_hash
    entry.key_id = ring.signing_id
    # Taken under the lock, so that time order and chain order agree.
    entry.at = timezone.now()
    entry.entry_hash = keyed_hash(entry, ring.keys[ring.signing_id])
    insert_one(entry)
    return entry.entry_hash


# --- Verification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainBreak:
    entry_id: int
    reason: str


@dataclass(frozen=True)
class ChainReport:
    """A walk of the whole chain. `checked` counts every entry; `intact` those before the first break.
    `seen` maps each watched entry id to its 1-based position in the chain and its stored hash."""

    checked: int
    head: str
    broken: ChainBreak | None
    intact: int = 0
    last_id: int = 0
    seen: dict[int, tuple[int, str]] = field(default_factory=dict)

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


def _fault(entry: AuditEntry, expected_prev: str, signed_before: bool, ring: KeyRing) -> str | None:
    """Why `entry` does not hold in its place, or None."""
    if entry.prev_hash != expected_prev:
        return (
            "its previous-entry hash does not match the entry before it "
            "(an entry was removed or altered, or this one was inserted)"
        )
    if not entry.key_id:
        if signed_before:
            return "it is not signed, yet signed entries come before it (written or re-hashed without the key)"
        return (
            None
            if hmac.compare_digest(unkeyed_hash(entry), entry.entry_hash)
            else "its content does not match its hash"
        )
    key = ring.keys.get(entry.key_id)
    if key is None:
        return f"it is signed with key {entry.key_id}, which AUDIT_HMAC_KEYS does not list"
    if not hmac.compare_digest(keyed_hash(entry, key), entry.entry_hash):
        return f"its content does not match its hash (HMAC with key {entry.key_id})"
    return None


def audit_verify_chain(watch: Collection[int] = ()) -> ChainReport:
    """Walk the chain from the first entry, naming the first entry that does not hold; the walk goes on to the
    end so that the chain's length and head can be compared with the checkpoints (`watch`: their entry ids)."""
    ring = key_ring()
    expected_prev = GENESIS_HASH
    checked = intact = last_id = 0
    broken: ChainBreak | None = None
    signed_before = False
    seen: dict[int, tuple[int, str]] = {}
    for entry in _entries_in_chain_order():
        checked += 1
        if broken is None:
            reason = _fault(entry, expected_prev, signed_before, ring)
            if reason is None:
                intact += 1
            else:
                broken = ChainBreak(entry.id, reason)
        if entry.id in watch:
            seen[entry.id] = (checked, entry.entry_hash)
        signed_before = signed_before or bool(entry.key_id)
        expected_prev = entry.entry_hash
        last_id = entry.id
    return ChainReport(checked, expected_prev, broken, intact, last_id, seen)
