"""What the storage page shows: stored result bytes and job counts per team and connection, each team's
retention, and what the next purge will remove. Reads the tally (finished jobs) and counts active jobs live."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count

from accounts.models import Team
from jobs.models import Connection, Job, RetentionPolicy
from jobs.services.retention import PurgeReport, effective_policy, purge_plan
from jobs.services.tally import tally_rows
from jobs.states import ACTIVE_STATES


@dataclass
class StorageRow:
    team: str
    connection: str
    finished_jobs: int = 0
    active_jobs: int = 0
    results: int = 0
    result_bytes: int = 0


@dataclass
class TeamRetention:
    team: str
    result_days: int
    job_days: int
    own_policy: bool
    next_purge: dict[str, int] = field(default_factory=dict)


@dataclass
class StorageSummary:
    rows: list[StorageRow]
    totals: StorageRow
    teams: list[TeamRetention]
    next_purge: PurgeReport


NO_TEAM = "No team"


def storage_summary(*, team_ids: frozenset[int] | None = None) -> StorageSummary:
    """Every team's storage, or only that of `team_ids` (a lead's teams: jobs of no team are left out)."""
    every_team = team_ids is None
    team_rows = Team.objects.all() if every_team else Team.objects.filter(pk__in=sorted(team_ids))
    teams = dict(team_rows.values_list("pk", "name"))
    connections = dict(Connection.objects.values_list("pk", "name"))
    rows: dict[tuple[str, str], StorageRow] = {}

    def row(team_id: int | None, connection_id: int) -> StorageRow:
        team = teams.get(team_id, NO_TEAM) if team_id else NO_TEAM
        connection = connections.get(connection_id, f"#{connection_id}")
        return rows.setdefault((team, connection), StorageRow(team, connection))

    for tally in tally_rows(set(teams)):
        if not every_team and tally.team_id not in teams:
            continue
        entry = row(tally.team_id, tally.connection_id)
        entry.finished_jobs += tally.jobs
        entry.results += tally.results
        entry.result_bytes += tally.result_bytes
    active_jobs = Job.objects.filter(state__in=sorted(ACTIVE_STATES))
    if not every_team:
        active_jobs = active_jobs.filter(team_id__in=sorted(teams))
    active = active_jobs.values_list("team_id", "connection_id").annotate(n=Count("id")).order_by()
    for team_id, connection_id, n in active:
        row(team_id, connection_id).active_jobs += n
    ordered = [rows[key] for key in sorted(rows, key=lambda key: (key[0] == NO_TEAM, key))]
    totals = StorageRow("All teams", "")
    for entry in ordered:
        totals.finished_jobs += entry.finished_jobs
        totals.active_jobs += entry.active_jobs
        totals.results += entry.results
        totals.result_bytes += entry.result_bytes

    plan = purge_plan()
    if not every_team:
        # The totals of the lead's own teams only.
        own = PurgeReport()
        for team_id, amounts in plan.per_team.items():
            if team_id in teams:
                own.add(team_id, **amounts)
        plan = own
    empty = {"results": 0, "result_bytes": 0, "jobs": 0}
    policies = {policy.team_id: policy for policy in RetentionPolicy.objects.all()}
    retention = []
    for team_id, name in sorted(teams.items(), key=lambda item: item[1]):
        result_days, job_days = effective_policy(policies.get(team_id))
        retention.append(
            TeamRetention(name, result_days, job_days, team_id in policies, plan.per_team.get(team_id, empty))
        )
    if every_team:
        default_result, default_job = effective_policy(None)
        retention.append(TeamRetention(NO_TEAM, default_result, default_job, False, plan.per_team.get(None, empty)))
    return StorageSummary(rows=ordered, totals=totals, teams=retention, next_purge=plan)
