"""Who may see and do what. Every page, API handler, download, comparison and chart asks these functions.

- Admins (staff or superusers) see every job.
- Auditors see every job of the teams they audit, read-only.
- Analysts see their own jobs, and their teammates' jobs when the team shares its history (read-only).
- Only a job's owner may cancel or re-run it; auditors never submit, cancel or re-run anything.
- Owners, leads and auditors of the job's team and admins may pin a job (a hold retention respects): pinning is
  the one write an auditor may make.
- A team lead is an analyst of the team who also manages its notification rules and sees its storage.
- A user in no team sees only their own jobs.
- The audit trail's readers are decided in audit.access.
- Connections are granted to teams: a user sees and lists the scripts of the connections granted to any of
  their teams, and submits only to those granted to a team they are an analyst of. Admins use them all. A job's
  own connection is shown with the job to whoever may see the job.
A job the user may not see answers 404, never 403, so that its existence does not leak.
"""

from __future__ import annotations

import uuid as uuid_lib
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404

from accounts.models import Membership, Team
from jobs.models import Connection, Job
from omlpy_dashboard.fastsql import membership_rows

# The roles that submit jobs: a lead is an analyst who also manages the team's notification rules.
SUBMITTING_ROLES = frozenset({Membership.Role.ANALYST, Membership.Role.LEAD})


def is_admin(user) -> bool:
    return bool(user.is_authenticated and (user.is_staff or user.is_superuser))


@dataclass(frozen=True)
class Role:
    team_id: int
    team_name: str
    role: str
    shares_history: bool
    # The connections granted to the team.
    connection_ids: frozenset[int] = frozenset()


# Where memberships() keeps what it read on the user object.
_MEMBERSHIPS_ATTR = "_access_memberships"


def memberships(user) -> tuple[Role, ...]:
    """The user's teams, roles and the connections granted to each team, ordered by team name; read once per
    user object.

    A request's user is loaded anew for every request, so a request sees its memberships as they were when it
    first asked and never pays more than one query for them, however many checks a page or a handler makes.
    """
    if not user.is_authenticated:
        return ()
    cached = getattr(user, _MEMBERSHIPS_ATTR, None)
    if cached is None:
        # One statement (omlpy_dashboard.fastsql: every request asks). The grants come in it (a row per team and
        # granted connection), so that deciding which connections a user may use costs no query of its own.
        rows = membership_rows(Membership, Team, Connection.teams.through, user.pk)
        teams: dict[int, tuple[str, str, bool]] = {}
        granted: dict[int, set[int]] = {}
        for team_id, name, role, shares, connection_id in rows:
            teams.setdefault(team_id, (name, role, shares))
            ids = granted.setdefault(team_id, set())
            if connection_id is not None:
                ids.add(connection_id)
        cached = tuple(
            Role(team_id, name, role, shares, frozenset(granted[team_id]))
            for team_id, (name, role, shares) in teams.items()
        )
        setattr(user, _MEMBERSHIPS_ATTR, cached)
    return cached


def home_team_id(user, connection_id: int | None = None) -> int | None:
    """The team a new job of `user` is filed under: the first of their teams by name, preferring one whose
    analysts may use `connection_id`, so that the job's team is a team the connection is granted to."""
    roles = memberships(user)
    if connection_id is not None:
        for role in roles:
            if role.role in SUBMITTING_ROLES and connection_id in role.connection_ids:
                return role.team_id
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
    return Membership.Role.AUDITOR not in roles or bool(roles & SUBMITTING_ROLES)


# --- Connections ----------------------------------------------------------------------------------


class ConnectionDenied(PermissionDenied):
    """The user may not submit to this connection. The message never names its URL or user name."""


def visible_connection_ids(user) -> frozenset[int] | None:
    """The ids of the connections `user` may see and list the scripts of; None means every connection."""
    if is_admin(user):
        return None
    return frozenset().union(*(role.connection_ids for role in memberships(user)))


def usable_connection_ids(user) -> frozenset[int] | None:
    """The ids of the connections `user` may submit to; None means every connection.

    Only the grants of the teams the user is an analyst of count: an auditor's teams make their connections
    visible to the auditor, never usable.
    """
    if is_admin(user):
        return None
    if not can_submit(user):
        return frozenset()
    return frozenset().union(*(role.connection_ids for role in memberships(user) if role.role in SUBMITTING_ROLES))


def _connections(ids: frozenset[int] | None) -> QuerySet[Connection]:
    connections = Connection.objects.all() if ids is None else Connection.objects.filter(pk__in=sorted(ids))
    return connections.order_by("name")


def visible_connections(user) -> QuerySet[Connection]:
    return _connections(visible_connection_ids(user)) if user.is_authenticated else Connection.objects.none()


def usable_connections(user) -> QuerySet[Connection]:
    return _connections(usable_connection_ids(user)) if user.is_authenticated else Connection.objects.none()


def may_see_connection(user, connection_id: int) -> bool:
    ids = visible_connection_ids(user)
    return user.is_authenticated and (ids is None or connection_id in ids)


def may_use_connection(user, connection_id: int) -> bool:
    ids = usable_connection_ids(user)
    return user.is_authenticated and (ids is None or connection_id in ids)


def connection_for_user(user, connection_id) -> Connection:
    """The connection with this id if `user` may see it; Http404 otherwise (its existence does not leak)."""
    key = str(connection_id)
    if not (key.isascii() and key.isdigit() and int(key) < 2**63) or not may_see_connection(user, int(key)):
        raise Http404("No such connection.")
    found = Connection.objects.filter(pk=int(key)).first()
    if found is None:
        raise Http404("No such connection.")
    return found


def submit_refusal(user) -> str | None:
    """Why `user` may submit no job at all, in words for them; None when they may submit to some connection."""
    if not user.is_authenticated:
        return "Sign in to submit jobs."
    if is_admin(user):
        return None
    if not can_submit(user):
        return "Your role is read-only: auditors review jobs but do not submit them."
    if not memberships(user):
        return (
            "You are not a member of any team, and connections are granted to teams: ask an administrator to "
            "add you to a team before you submit jobs."
        )
    if not usable_connection_ids(user):
        return (
            "No connection is granted to your teams yet: ask an administrator to grant one to your team "
            "(Admin -> Connections)."
        )
    return None


def connection_refusal(user, connection: Connection) -> ConnectionDenied | None:
    """The refusal to raise when `user` submits to `connection`; None when they may."""
    if may_use_connection(user, connection.pk):
        return None
    # Not named: an id alone must not tell its name to someone it is not granted to.
    return ConnectionDenied(
        submit_refusal(user) or "That connection is not granted to any team you submit for; choose another one."
    )


# --- Jobs -----------------------------------------------------------------------------------------


def visible_team_ids(user) -> list[int]:
    """The teams whose every job `user` sees (besides their own jobs): those they audit, and those of theirs
    that share their history."""
    return sorted(
        {
            role.team_id
            for role in memberships(user)
            if role.role == Membership.Role.AUDITOR or (role.role in SUBMITTING_ROLES and role.shares_history)
        }
    )


def visibility_filter(user) -> Q | None:
    """A filter on Job for what `user` may see; None means everything."""
    if is_admin(user):
        return None
    # The teams are read first (one small query) rather than nested as subqueries: with literal ids, and none
    # for a user who only sees their own jobs, PostgreSQL walks the owner's history index instead of filtering
    # the whole table's (bench/history.py).
    teams = visible_team_ids(user)
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
    """Pin and unpin (a hold that retention respects): the job's owner, the leads and auditors of its team (a
    legal hold: the one write an auditor may make), and admins."""
    if is_admin(user):
        return True
    if job.owner_id == user.pk:
        return True
    holders = {Membership.Role.AUDITOR, Membership.Role.LEAD}
    return job.team_id is not None and any(
        role.role in holders and role.team_id == job.team_id for role in memberships(user)
    )


def lead_team_ids(user) -> frozenset[int]:
    """The teams `user` leads."""
    return frozenset(role.team_id for role in memberships(user) if role.role == Membership.Role.LEAD)


def can_view_storage(user) -> bool:
    """The storage page (stored bytes and jobs per team and connection, the next purge): admins, and team leads
    for their own teams (storage_team_ids); this is the one place that decides."""
    return is_admin(user) or bool(lead_team_ids(user))


def storage_team_ids(user) -> frozenset[int] | None:
    """The teams whose storage `user` sees: None means every team (admins)."""
    return None if is_admin(user) else lead_team_ids(user)
