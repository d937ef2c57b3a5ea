"""Signed checkpoints of the audit chain's head, kept outside the database, and the whole trail's verification.

The chain (audit.services) shows any edited, inserted or deleted entry, but a chain cut short still holds. So every
AUDIT_CHECKPOINT_INTERVAL seconds a Celery task writes the head as it stands (how many entries, the newest
one's id and hash, the time) to a file of its own in AUDIT_CHECKPOINT_DIR, signed with an HMAC under the first
of AUDIT_HMAC_KEYS. Because the head's hash commits to every entry before it, the newest checkpoint vouches for
the whole chain up to it: a chain that ends before it, or whose entry at that place differs, was cut or
rewritten. Entries written after the newest checkpoint are vouched for by nothing and can be removed unnoticed.

Each file is written whole under a temporary name and renamed into place, so a reader never sees half of one;
only the newest AUDIT_CHECKPOINT_KEEP files are kept (0 keeps them all).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Func, OuterRef, Subquery
from django.utils import timezone

from .models import AuditEntry
from .services import GENESIS_HASH, ChainReport, audit_verify_chain, key_ring

FORMAT = "omlpy-audit-checkpoint/1"
PREFIX = "audit-checkpoint-"
_FIELDS = ("format", "count", "last_id", "head", "at", "key_id")


@dataclass(frozen=True)
class Checkpoint:
    count: int
    last_id: int
    head: str
    at: datetime
    key_id: str
    path: Path

    def describe(self) -> str:
        return f"the checkpoint of {self.at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _signed_text(payload: dict[str, Any]) -> bytes:
    return json.dumps({name: payload[name] for name in _FIELDS}, sort_keys=True, separators=(",", ":")).encode()


def _signature(payload: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, _signed_text(payload), hashlib.sha256).hexdigest()


def _chain_head() -> tuple[int, int, str]:
    """(entries, newest id, newest hash), read in one statement so that all three come from one snapshot.
    Appends commit in id order (audit.services serializes them), so the entries up to that id are the chain."""
    # COUNT as a plain function, not an aggregate: the subquery counts without grouping the outer query.
    up_to = AuditEntry.objects.filter(id__lte=OuterRef("id")).order_by().values(n=Func("id", function="COUNT"))
    row = AuditEntry.objects.order_by("-id").values_list("id", "entry_hash", Subquery(up_to)).first()
    return (int(row[2]), int(row[0]), row[1]) if row else (0, 0, GENESIS_HASH)


def _directory() -> Path:
    return Path(settings.AUDIT_CHECKPOINT_DIR)


def audit_checkpoint_write() -> Path:
    """Sign the chain's current head into a new checkpoint file; drop the oldest beyond AUDIT_CHECKPOINT_KEEP."""
    count, last_id, head = _chain_head()
    ring = key_ring()
    at = timezone.now().astimezone(UTC)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "count": count,
        "last_id": last_id,
        "head": head,
        "at": at.isoformat(timespec="microseconds"),
        "key_id": ring.signing_id,
    }
    payload["hmac"] = _signature(payload, ring.keys[ring.signing_id])
    directory = _directory()
    directory.mkdir(parents=True, exist_ok=True)
    # The time first, so that names sort in the order the checkpoints were taken.
    path = directory / f"{PREFIX}{at:%Y%m%dT%H%M%S%fZ}-{count:012d}.json"
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".writing-", suffix=".json")
    try:
        with os.fdopen(descriptor, "w") as out:
            json.dump(payload, out, sort_keys=True, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _sync_directory(directory)
    _prune(directory)
    return path


def _sync_directory(directory: Path) -> None:
    # The rename is durable only once the folder itself is on disk.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _checkpoint_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{PREFIX}*.json")) if directory.is_dir() else []


def _prune(directory: Path) -> None:
    keep = settings.AUDIT_CHECKPOINT_KEEP
    if keep:
        for old in _checkpoint_files(directory)[:-keep]:
            # Another worker may be pruning the same files.
            with contextlib.suppress(FileNotFoundError):
                old.unlink()


def _read(path: Path) -> Checkpoint | str:
    """The checkpoint in `path`, or why it cannot be believed."""
    try:
        payload = json.loads(path.read_text())
        if payload.get("format") != FORMAT:
            return f"checkpoint {path.name} is not a checkpoint of this format"
        checkpoint = Checkpoint(
            count=int(payload["count"]),
            last_id=int(payload["last_id"]),
            head=str(payload["head"]),
            at=datetime.fromisoformat(payload["at"]),
            key_id=str(payload["key_id"]),
            path=path,
        )
        signature = str(payload["hmac"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"checkpoint {path.name} cannot be read ({exc.__class__.__name__})"
    key = key_ring().keys.get(checkpoint.key_id)
    if key is None:
        return f"checkpoint {path.name} is signed with key {checkpoint.key_id}, which AUDIT_HMAC_KEYS does not list"
    if not hmac.compare_digest(_signature(payload, key), signature):
        return f"checkpoint {path.name} does not match its signature (it was altered)"
    return checkpoint


@dataclass
class AuditVerification:
    """The chain's walk, the newest checkpoint that could be believed, and every finding, in words."""

    report: ChainReport
    checkpoint: Checkpoint | None
    checkpoints_read: int
    findings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def _chain_finding(report: ChainReport) -> str | None:
    if report.broken is None:
        return None
    entry = AuditEntry.objects.filter(pk=report.broken.entry_id).first()
    what = ""
    if entry is not None:
        what = f" ({entry.at:%Y-%m-%d %H:%M:%S} UTC, {entry.action} by {entry.actor_username or '-'})"
    return (
        f"Audit chain broken at entry #{report.broken.entry_id}{what}: {report.broken.reason}. "
        f"{report.intact} entries before it are intact."
    )


def _checkpoint_finding(report: ChainReport, checkpoint: Checkpoint) -> str | None:
    if checkpoint.count == 0:
        return None
    place = report.seen.get(checkpoint.last_id)
    if place is None:
        if report.last_id < checkpoint.last_id or report.checked < checkpoint.count:
            return (
                f"The chain ends at {report.checked} entries but {checkpoint.describe()} saw {checkpoint.count} "
                f"entries, up to entry #{checkpoint.last_id}: the newest entries were removed."
            )
        return f"Entry #{checkpoint.last_id}, the head of {checkpoint.describe()}, is missing from the chain."
    position, entry_hash = place
    if not hmac.compare_digest(entry_hash, checkpoint.head):
        return f"Entry #{checkpoint.last_id} differs from {checkpoint.describe()}: its hash is not the one recorded."
    if position != checkpoint.count:
        return (
            f"Entry #{checkpoint.last_id} is entry {position} of the chain, but {checkpoint.count} for "
            f"{checkpoint.describe()}: entries before it were removed or inserted."
        )
    return None


def audit_verify() -> AuditVerification:
    """Verify the chain, then hold it against the newest checkpoint that verifies (the one that saw the most
    entries: it vouches for every entry up to its head). A checkpoint that does not verify is a finding too."""
    checkpoints: list[Checkpoint] = []
    findings: list[str] = []
    files = _checkpoint_files(_directory())
    for path in files:
        read = _read(path)
        if isinstance(read, str):
            findings.append(read[:1].upper() + read[1:] + ".")
        else:
            checkpoints.append(read)
    newest = max(checkpoints, key=lambda c: (c.count, c.at), default=None)
    report = audit_verify_chain(watch={newest.last_id} if newest else ())
    chain = _chain_finding(report)
    if chain:
        findings.insert(0, chain)
    if newest is not None:
        against = _checkpoint_finding(report, newest)
        if against:
            findings.append(against)
    return AuditVerification(report, newest, len(files), findings)
