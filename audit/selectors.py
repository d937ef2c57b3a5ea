"""Reads shared by the audit page and its CSV export (one selector, so both show the same rows)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from audit.models import AuditEntry

from .access import visible_audit_entries

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


@dataclass(frozen=True)
class AuditFilters:
    actor: str = ""
    action: str = ""
    target: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def as_query(self) -> dict[str, str]:
        """The filters as URL parameters (the page's links to the next page and to the export)."""
        values = {"actor": self.actor, "action": self.action, "target": self.target}
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None:
                values[name] = moment.strftime("%Y-%m-%dT%H:%M")
        return {key: value for key, value in values.items() if value}


def audit_entries(user, filters: AuditFilters) -> QuerySet[AuditEntry]:
    """The entries `user` may read that match `filters`, newest first, ordered (at, id) for keyset paging."""
    entries = visible_audit_entries(user)
    if filters.actor:
        actor_id = get_user_model().objects.filter(username=filters.actor).values_list("pk", flat=True).first()
        # By the indexed actor column; a deleted user's entries keep only the name.
        entries = (
            entries.filter(actor_id=actor_id) if actor_id is not None else entries.filter(actor_username=filters.actor)
        )
    if filters.action:
        entries = entries.filter(action=filters.action)
    if filters.target:
        entries = entries.filter(target_id=filters.target.strip())
    if filters.since:
        entries = entries.filter(at__gte=filters.since)
    if filters.until:
        entries = entries.filter(at__lte=filters.until)
    return entries.order_by("-at", "-id")


def encode_cursor(entry: AuditEntry) -> str:
    return f"{(entry.at - _EPOCH) // _MICRO}.{entry.id}"


def decode_cursor(cursor: str) -> tuple[datetime, int] | None:
    try:
        micros, entry_id = cursor.split(".", 1)
        return _EPOCH + timedelta(microseconds=int(micros)), int(entry_id)
    except (ValueError, OverflowError):
        return None


def after_cursor(entries: QuerySet[AuditEntry], cursor: str | None) -> QuerySet[AuditEntry]:
    position = decode_cursor(cursor) if cursor else None
    if position is None:
        return entries
    at, entry_id = position
    return entries.filter(Q(at__lt=at) | Q(at=at, id__lt=entry_id))


def audit_page(user, filters: AuditFilters, cursor: str | None, size: int = 50):
    """One page of entries and the cursor of the next page (None on the last page)."""
    rows = list(after_cursor(audit_entries(user, filters), cursor)[: size + 1])
    next_cursor = encode_cursor(rows[size - 1]) if len(rows) > size else None
    return rows[:size], next_cursor


def audit_iter_all(user, filters: AuditFilters, batch: int = 1000) -> Iterator[AuditEntry]:
    """Every matching entry, in page order, read in keyset batches so that memory stays flat."""
    cursor = None
    while True:
        rows, cursor = audit_page(user, filters, cursor, size=batch)
        yield from rows
        if cursor is None:
            return
