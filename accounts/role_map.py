"""OIDC_ROLE_MAP: which groups of the identity provider grant which team roles here.

The format is a comma-separated list of `GROUP=TEAM:ROLE` entries:

    omlpy-risk-analysts=Risk:analyst,omlpy-risk-auditors=Risk:auditor,omlpy-admins=*:admin

- GROUP is a value of the user's group claim (OIDC_TEAM_CLAIM), compared exactly (case and all). It may
  contain `=` (the entry is split at its last `=`) but not `,`.
- TEAM is a team's name (created at the first sign-in that needs it); ROLE is `analyst`, `lead` or `auditor`.
- `*:admin` makes the group's members administrators (staff and superuser). `*` takes no other role, and
  `admin` no team.
- A group may appear in several entries (one per team). When a user's groups grant two roles in one team,
  the entry listed first wins.

Plain Python, no Django: the settings module validates the map at start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

ALL_TEAMS = "*"
ADMIN = "admin"
TEAM_ROLES = ("analyst", "lead", "auditor")
TEAM_NAME_MAX = 100  # accounts.models.Team.name


class RoleMapError(ValueError):
    """OIDC_ROLE_MAP does not parse; the message says which entry and why."""


@dataclass(frozen=True)
class RoleMapEntry:
    group: str
    team: str  # a team's name, or ALL_TEAMS for the admin role
    role: str


@dataclass(frozen=True)
class Grants:
    """What a user's groups grant: team name -> role, in map order, and whether they make an administrator."""

    teams: dict[str, str] = field(default_factory=dict)
    admin: bool = False
    matched_groups: tuple[str, ...] = ()

    @property
    def any(self) -> bool:
        return self.admin or bool(self.teams)


def parse_role_map(text: str) -> tuple[RoleMapEntry, ...]:
    """The entries of `text`, in order; RoleMapError names the first entry that is wrong."""
    entries: list[RoleMapEntry] = []
    seen: dict[tuple[str, str], tuple[int, str]] = {}
    for position, raw in enumerate((part.strip() for part in text.split(",")), start=1):
        if not raw:
            continue
        where = f"OIDC_ROLE_MAP entry {position} ({raw!r})"
        group, equals, grant = raw.rpartition("=")
        team, colon, role = grant.rpartition(":")
        group, team, role = group.strip(), team.strip(), role.strip()
        if not equals or not colon or not group or not team or not role:
            raise RoleMapError(f"{where}: expected GROUP=TEAM:ROLE, e.g. omlpy-risk-analysts=Risk:analyst")
        if role == ADMIN and team != ALL_TEAMS:
            raise RoleMapError(f"{where}: admin is not a team role; write {group}=*:admin")
        if team == ALL_TEAMS and role != ADMIN:
            raise RoleMapError(f"{where}: team * takes only the admin role")
        if role not in (*TEAM_ROLES, ADMIN):
            raise RoleMapError(f"{where}: the role must be analyst, lead, auditor or admin, not {role!r}")
        if len(team) > TEAM_NAME_MAX:
            raise RoleMapError(f"{where}: a team name has at most {TEAM_NAME_MAX} characters")
        earlier = seen.get((group, team))
        if earlier is not None and earlier[1] != role:
            raise RoleMapError(f"{where}: entry {earlier[0]} already gives group {group!r} a role in team {team!r}")
        seen[(group, team)] = (position, role)
        entries.append(RoleMapEntry(group=group, team=team, role=role))
    return tuple(entries)


def groups_from_claim(value: object) -> list[str]:
    """The group names of a claim's value: a list of strings (the usual form) or a single string."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [item for item in value if isinstance(item, str)]
    return []


def grants_for(entries: Iterable[RoleMapEntry], groups: Iterable[str]) -> Grants:
    held = set(groups)
    teams: dict[str, str] = {}
    admin = False
    matched: list[str] = []
    for entry in entries:
        if entry.group not in held:
            continue
        if entry.group not in matched:
            matched.append(entry.group)
        if entry.team == ALL_TEAMS:
            admin = True
        else:
            teams.setdefault(entry.team, entry.role)
    return Grants(teams=teams, admin=admin, matched_groups=tuple(matched))
