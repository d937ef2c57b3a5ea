"""Who may read the audit trail: admins all of it; auditors the entries of the members of the teams they audit.

The memberships are read through the user model's relations (`memberships`, with its `role` and `team`), so that
the audit app, which accounts and jobs both write to, imports neither of them.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from .models import AuditEntry

# accounts.Membership.Role.AUDITOR: a membership that reads its team's trail.
AUDITOR_ROLE = "auditor"


def _is_admin(user) -> bool:
    return bool(user.is_authenticated and (user.is_staff or user.is_superuser))


# Where _audited_team_ids keeps what it read on the user object (a request's user is loaded anew per request).
_AUDITED_ATTR = "_audit_audited_team_ids"


def _audited_team_ids(user) -> list[int]:
    cached = getattr(user, _AUDITED_ATTR, None)
    if cached is None:
        cached = list(user.memberships.filter(role=AUDITOR_ROLE).values_list("team_id", flat=True))
        setattr(user, _AUDITED_ATTR, cached)
    return cached


def can_view_audit(user) -> bool:
    """Auditors and admins; everyone else is refused the audit pages (403)."""
    if not user.is_authenticated:
        return False
    return _is_admin(user) or bool(_audited_team_ids(user))


def visible_audit_entries(user) -> QuerySet[AuditEntry]:
    """The audit entries `user` may read: all for admins, those of audited teams' members for auditors."""
    if _is_admin(user):
        return AuditEntry.objects.all()
    if not user.is_authenticated:
        return AuditEntry.objects.none()
    members = get_user_model().objects.filter(memberships__team_id__in=_audited_team_ids(user)).values("id")
    return AuditEntry.objects.filter(actor_id__in=members)
