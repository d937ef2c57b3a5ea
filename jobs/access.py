"""Who may see and do what. Every page, API handler, download, comparison and chart asks these functions.

- Admins (staff or superusers) see every job.
- Auditors see every job of the teams they audit, read-only.
- Analysts see their own jobs, and their teammates' jobs when the team shares its history (read-only).
- Only a job's owner may cancel or re-run it; auditors never submit, cancel or re-run anything.
- Owners, auditors of the job's team and admins may pin a job (a hold retention respects): pinning is the one
  write an auditor may make.
- A user in no team sees only their own jobs.
- The audit trail: admins see all of it; auditors see the entries of the members of the teams they audit.
A job the user may not see answers 404, never 403, so that its existence does not leak.
"""

from __future__ import annotations

import uuid as uuid_lib
from dataclasses import dataclass

from django.db import connection
from django.db.models import Q, QuerySet
from django.http import Http404

from accounts.models import Membership, Team

from .models import AuditEntry, Job


def is_admin(user) -> bool:
    return bool(user.is_authenticated and (user.is_staff or user.is_superuser))


@dataclass(frozen=True)
class Role:
    team_id: int
    team_name: str
    role: str
    shares_history: bool


# Where memberships() keeps what it read on the user object.
_MEMBERSHIPS_ATTR = "_access_memberships"


def memberships(user) -> tuple[Role, ...]:
    """The user's teams and roles, ordered by team name; read once per user object.

    A request's user is loaded anew for every request, so a request sees its memberships as they were when it
    first asked and never pays more than one query for them, however many checks a page or a handler makes.
    """
    if not user.is_authenticated:
        return ()
    cached = getattr(user, _MEMBERSHIPS_ATTR, None)
    if cached is None:
        # Plain SQL: asked on every request, and a compiled queryset costs more than the query itself.
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT m.team_id, t.name, m.role, t.shares_history "  # noqa: S608 - table names only
                f"FROM {Membership._meta.db_table} m JOIN {Team._meta.db_table} t ON t.id = m.team_id "
                "WHERE m.user_id = %s ORDER BY t.name, t.id",
                [user.pk],
            )
            cached = tuple(Role(team_id, name, role, bool(shares)) for team_id, name, role, shares in cursor.fetchall())
        setattr(user, _MEMBERSHIPS_ATTR, cached)
    return cached


def home_team_id(user) -> int | None:
    """The team a new job of `user` is filed under: the first of their teams by name."""
    roles = memberships(user)
    return roles[0].team_id if roles else None


def is_auditor(user) -> bool:
    return any(role.role == Membership.Role.AUDITOR for role in memberships(user))


def can_submit(user) -> bool:
    """Auditors are read-only; everyone else signed in may submit."""
    if not user.is_authenticated:
        return False
    if is_admin(user):
        return True
    roles = {role.role for role in memberships(user)}
    return Membership.Role.AUDITOR not in roles or Membership.Role.ANALYST in roles


def visibility_filter(user) -> Q | None:
    """A filter on Job for what `user` may see; None means everything."""
    if is_admin(user):
        return None
    # The teams are read first (one small query) rather than nested as subqueries: with literal ids, and none
    # for a user who only sees their own jobs, PostgreSQL walks the owner's history index instead of filtering
    # the whole table's (bench/history.py).
    teams = sorted(
        {
            role.team_id
            for role in memberships(user)
            if role.role == Membership.Role.AUDITOR or (role.role == Membership.Role.ANALYST and role.shares_history)
        }
    )
    return Q(owner=user) | Q(team_id__in=teams) if teams else Q(owner=user)


def visible_jobs(user) -> QuerySet[Job]:
    if not user.is_authenticated:
        return Job.objects.none()
    condition = visibility_filter(user)
    return Job.objects.all() if condition is None else Job.objects.filter(condition)


def job_for_user(user, job_uuid) -> Job:
    """The job with this public id if `user` may see it; Http404 otherwise."""
    try:
        key = uuid_lib.UUID(str(job_uuid))
    except ValueError:
        raise Http404("No such job.") from None
    job = visible_jobs(user).select_related("connection", "owner", "team", "parent").filter(uuid=key).first()
    if job is None:
        raise Http404("No such job.")
    return job


def can_modify(user, job: Job) -> bool:
    """Cancel and re-run: the owner (unless read-only), or an admin."""
    if is_admin(user):
        return True
    return job.owner_id == user.pk and can_submit(user)


def can_pin(user, job: Job) -> bool:
    """Pin and unpin (a hold that retention respects): the job's owner, the auditors of its team (a legal hold:
    the one write an auditor may make), and admins. Team leads join them once the lead role exists."""
    if is_admin(user):
        return True
    if job.owner_id == user.pk:
        return True
    return job.team_id is not None and any(
        role.role == Membership.Role.AUDITOR and role.team_id == job.team_id for role in memberships(user)
    )


def can_view_storage(user) -> bool:
    """The storage page (stored bytes and jobs per team and connection, the next purge): admins. Team leads
    are to see their own teams' there once the lead role exists; this is the one place that decides."""
    return is_admin(user)


def can_view_audit(user) -> bool:
    """Auditors and admins; everyone else is refused the audit pages (403)."""
    return is_admin(user) or is_auditor(user)


def visible_audit_entries(user) -> QuerySet[AuditEntry]:
    """The audit entries `user` may read: all for admins, those of audited teams' members for auditors."""
    if not can_view_audit(user):
        return AuditEntry.objects.none()
    if is_admin(user):
        return AuditEntry.objects.all()
    audited = [role.team_id for role in memberships(user) if role.role == Membership.Role.AUDITOR]
    members = Membership.objects.filter(team_id__in=audited).values("user_id")
    return AuditEntry.objects.filter(actor_id__in=members)
