"""The audit trail: append-only records of user actions. `audit_record` is the only writer."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from .models import AuditEntry


def client_ip(request) -> str | None:
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def audit_record(
    *,
    action: str,
    actor=None,
    request=None,
    target_type: str = "",
    target_id: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry. Never include secrets in `details`."""
    if actor is None and request is not None and getattr(request, "user", None) is not None:
        actor = request.user if request.user.is_authenticated else None
    return AuditEntry.objects.create(
        at=timezone.now(),
        actor=actor,
        actor_username=getattr(actor, "username", "") or "",
        action=action,
        ip=client_ip(request),
        target_type=target_type,
        target_id=str(target_id),
        details=details or {},
    )
