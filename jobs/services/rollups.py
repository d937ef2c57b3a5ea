"""Hourly rollups of finished jobs (JobRollup): what analytics reads, kept up to date as jobs end.

- A rollup counts the jobs of one hour of creation (UTC), owner, team, connection, script, kind and final
  state, with the sums of their phases (succeeded jobs, as jobs.selectors.timing.job_phases defines them) and their
  durations in a log-spaced histogram (each bucket BASE times as wide as the one below, so a percentile read from it is
  within half a bucket, about 2.5 %, of the exact one).
- `rollup_job_finished` adds a job in the transaction of its terminal transition (jobs.services.jobs): a job that
  ends is in the rollups exactly when its row says it ended.
- Rollups come in two parts: the live part (`purged` false) says what the job rows say and can be rebuilt from
  them (`rollups_rebuild`, `manage.py rollups_rebuild`, for rows written any other way); the purged part holds
  jobs retention removed. `rollups_purge` moves jobs about to be deleted from the first to the second, in the
  purge's transaction: each job counts once, before and after.
- Team rollups (TeamRollup) are the hourly rollups, both parts, summed over owner, connection, script and
  kind: per hour, team and state, their histograms kept per script ({script: {bucket: count}}). They are added
  to with the live part (rollup_add), rebuilt from the hourly rollups with them (rollups_rebuild), and a purge
  leaves them as they were (each job counts once before and after). This module is the only one that writes
  either level.
- `rollups_for` selects the rollups a user may see that match the history's filters, as
  jobs.selectors.jobs.job_history_queryset selects rows: team rollups where no owner, connection, script or kind is
  chosen and the viewer sees whole teams (an administrator sees them all), hourly rollups for the rest.
"""

from __future__ import annotations

import math
import uuid as uuid_lib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Q, QuerySet

from jobs.models import Job, JobRollup, TeamRollup
from jobs.selectors.access import is_admin, visible_team_ids
from jobs.selectors.jobs import HistoryFilters, default_window_start
from jobs.selectors.timing import job_phases
from jobs.states import TERMINAL_STATES, JobState

BASE = 1.05
FLOOR = 0.01  # seconds: shorter durations share the first bucket

# The columns of a job the rollup needs, in the order rollup_purged reads them.
COLUMNS = (
    "created_at",
    "owner_id",
    "team_id",
    "connection_id",
    "script_name",
    "kind",
    "state",
    "async_flag",
    "submitted_at",
    "oml_accepted_at",
    "oml_last_running_at",
    "oml_elapsed_seconds",
    "oml_finished_at",
    "result_fetched_at",
    "finished_at",
)
# The phases a rollup sums (jobs.selectors.timing.job_phases: the job page's, analytics' and the statistics'
# definition).
PHASES = ("queue", "oml", "lag", "fetch")


def duration_bucket(seconds: float) -> int:
    return max(0, math.floor(math.log(max(seconds, FLOOR) / FLOOR) / math.log(BASE)))


def bucket_value(index: int) -> float:
    """The geometric middle of a bucket: the value its durations are read back as."""
    return FLOOR * BASE ** (index + 0.5)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


def _hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _group() -> dict:
    return {"jobs": 0, "sums": defaultdict(float), "n": defaultdict(int), "hist": {}}


def rollup_groups(rows: Iterable[tuple]) -> dict[tuple, dict]:
    """Jobs (tuples of COLUMNS) summed per rollup key."""
    groups: dict[tuple, dict] = {}
    for values in rows:
        job = dict(zip(COLUMNS, values, strict=True))
        key = (
            _hour(job["created_at"]),
            job["owner_id"],
            job["team_id"],
            job["connection_id"],
            job["script_name"],
            job["kind"],
            job["state"],
        )
        group = groups.setdefault(key, _group())
        group["jobs"] += 1
        if job["state"] != JobState.SUCCEEDED:
            continue
        phases = job_phases(job)
        for name in PHASES:
            seconds = phases[name]
            if seconds is not None:
                group["sums"][name] += seconds
                group["n"][name] += 1
        total = _seconds(job["created_at"], job["finished_at"])
        if total is not None:
            bucket = str(duration_bucket(total))
            group["hist"][bucket] = group["hist"].get(bucket, 0) + 1
    return groups


def rollup_key_fields(key: tuple) -> dict:
    hour, owner_id, team_id, connection_id, script, kind, state = key
    return {
        "hour": hour,
        "owner_id": owner_id,
        "team_id": team_id,
        "connection_id": connection_id,
        "script_name": script,
        "kind": kind,
        "state": state,
    }


def _key_order(item: tuple) -> list[str]:
    return [str(part) for part in item[0]]


def rollup_add(rows: Iterable[tuple], *, purged: bool = False) -> None:
    """Add jobs (tuples of COLUMNS) to their rollups of the live part (or the purged part), in the caller's
    transaction; jobs added to the live part are added to their team rollups too (jobs moved to the purged part
    are there already). Rollups are locked in key order, hourly ones first, so that two transactions adding to
    the same ones wait for each other rather than deadlock."""
    groups = rollup_groups(rows)
    with transaction.atomic():
        for key, group in sorted(groups.items(), key=_key_order):
            fields = rollup_key_fields(key)
            rollup = JobRollup.objects.select_for_update().filter(purged=purged, **fields).first() or JobRollup(
                purged=purged, **fields
            )
            rollup_merge(rollup, group)
            rollup.save()
        if purged:
            return
        for key, group in sorted(team_groups(groups).items(), key=_key_order):
            fields = team_key_fields(key)
            team_rollup = TeamRollup.objects.select_for_update().filter(**fields).first() or TeamRollup(**fields)
            rollup_merge(team_rollup, group)
            team_rollup.save()


def merge_counts(into: dict, more: dict) -> dict:
    """`into` with the counts of `more` added: histograms ({bucket: count}) or histograms per script
    ({script: {bucket: count}}). Nested histograms are copied, never changed in place."""
    for key, value in more.items():
        if isinstance(value, dict):
            into[key] = merge_counts(dict(into.get(key, {})), value)
        else:
            into[key] = into.get(key, 0) + value
    return into


def group_add(total: dict, group: dict, script: str | None = None) -> None:
    """Add one group of sums (as rollup_groups makes them) to another; with `script`, its histogram under that
    script's name (a team rollup's group)."""
    total["jobs"] += group["jobs"]
    for name in PHASES:
        total["sums"][name] += group["sums"][name]
        total["n"][name] += group["n"][name]
    if group["hist"]:
        total["hist"] = merge_counts(total["hist"], group["hist"] if script is None else {script: group["hist"]})


def team_key_fields(key: tuple) -> dict:
    hour, team_id, state = key
    return {"hour": hour, "team_id": team_id, "state": state}


def team_groups(groups: dict[tuple, dict]) -> dict[tuple, dict]:
    """Groups of hourly rollup keys (rollup_groups) summed per team rollup key (hour, team, state)."""
    summed: dict[tuple, dict] = {}
    for key, group in groups.items():
        hour, _owner_id, team_id, _connection_id, script, _kind, state = key
        group_add(summed.setdefault((hour, team_id, state), _group()), group, script)
    return summed


# The columns of an hourly rollup that its team rollup sums, in the order team_groups_of_rollups reads them.
ROLLUP_SUM_COLUMNS = (
    "hour",
    "team_id",
    "script_name",
    "state",
    "jobs",
    *(f"{name}_{part}" for name in PHASES for part in ("sum", "n")),
    "durations",
)


def team_groups_of_rollups(rows: Iterable[tuple]) -> dict[tuple, dict]:
    """Hourly rollups (tuples of ROLLUP_SUM_COLUMNS) summed per team rollup key."""
    summed: dict[tuple, dict] = {}
    for values in rows:
        row = dict(zip(ROLLUP_SUM_COLUMNS, values, strict=True))
        key = (_hour(row["hour"]), row["team_id"], row["state"])
        group = summed.setdefault(key, _group())
        group["jobs"] += row["jobs"]
        for name in PHASES:
            group["sums"][name] += row[f"{name}_sum"]
            group["n"][name] += row[f"{name}_n"]
        if row["durations"]:
            group["hist"] = merge_counts(group["hist"], {row["script_name"]: row["durations"]})
    return summed


def rollup_merge(rollup: JobRollup | TeamRollup, group: dict) -> None:
    """Add a group's sums to an hourly or a team rollup (not saved)."""
    rollup.jobs += group["jobs"]
    for name in PHASES:
        setattr(rollup, f"{name}_sum", getattr(rollup, f"{name}_sum") + group["sums"][name])
        setattr(rollup, f"{name}_n", getattr(rollup, f"{name}_n") + group["n"][name])
    rollup.durations = merge_counts(dict(rollup.durations), group["hist"])


def rollup_job_finished(*, job_id: int) -> None:
    """Add a job that has just ended to its rollup, in the transaction of its terminal transition."""
    rollup_add(Job.objects.filter(pk=job_id, state__in=TERMINAL_STATES).values_list(*COLUMNS))


def rollups_purge(*, job_ids: list[int]) -> list[datetime]:
    """In the purge's transaction, before the rows go: add their jobs to the purged part, and return the hours
    whose live part the caller rebuilds once the rows are deleted (`rollups_rebuild(hours=...)`: recomputed
    from the rows that remain rather than subtracted, since the live part may lack rows written by SQL and
    never rebuilt)."""
    rows = list(Job.objects.filter(pk__in=job_ids, state__in=TERMINAL_STATES).values_list(*COLUMNS))
    rollup_add(rows, purged=True)
    return sorted({_hour(row[0]) for row in rows})


REBUILD_BATCH = 5000


def rollups_rebuild(
    *, start: datetime | None = None, end: datetime | None = None, hours: Iterable[datetime] | None = None
) -> int:
    """Recompute the live part from the job rows, for the hours of creation in [start, end) (all without
    them), or for the given hours only, and the team rollups of those hours from the hourly ones. Returns the
    number of jobs counted.

    1. Delete the live rollups of those hours.
    2. Read the finished jobs of those hours in REBUILD_BATCH rows at a time (keyset on id) and sum them per key.
    3. Write the sums, in the caller's transaction (or one of its own).
    4. Rebuild the team rollups of those hours from the hourly rollups, live and purged.
    """
    jobs = Job.objects.filter(state__in=TERMINAL_STATES)
    hourly = JobRollup.objects.all()
    teams = TeamRollup.objects.all()
    if hours is not None:
        hours = sorted({_hour(hour) for hour in hours})
        if not hours:
            return 0
        condition = Q()
        for hour in hours:
            condition |= Q(created_at__gte=hour, created_at__lt=hour + timedelta(hours=1))
        jobs, hourly, teams = jobs.filter(condition), hourly.filter(hour__in=hours), teams.filter(hour__in=hours)
    else:
        if start is not None:
            jobs = jobs.filter(created_at__gte=_hour(start))
            hourly, teams = hourly.filter(hour__gte=_hour(start)), teams.filter(hour__gte=_hour(start))
        if end is not None:
            jobs = jobs.filter(created_at__lt=_hour(end))
            hourly, teams = hourly.filter(hour__lt=_hour(end)), teams.filter(hour__lt=_hour(end))
    counted = 0
    with transaction.atomic():
        # 1.
        hourly.filter(purged=False).delete()
        # 2.
        totals: dict[tuple, dict] = {}
        last = 0
        while True:
            batch = list(jobs.filter(pk__gt=last).order_by("pk").values_list("pk", *COLUMNS)[:REBUILD_BATCH])
            if not batch:
                break
            last = batch[-1][0]
            counted += len(batch)
            for key, group in rollup_groups(row[1:] for row in batch).items():
                group_add(totals.setdefault(key, _group()), group)
        # 3.
        made = []
        for key, group in totals.items():
            rollup = JobRollup(purged=False, **rollup_key_fields(key))
            rollup_merge(rollup, group)
            made.append(rollup)
        JobRollup.objects.bulk_create(made, batch_size=1000)
        # 4.
        team_rollups_rebuild(hourly, teams)
    return counted


def team_rollups_rebuild(hourly: QuerySet, teams: QuerySet) -> int:
    """Replace the team rollups `teams` by the sums of the hourly rollups `hourly` (the same hours); returns
    how many were written. Also what the migration that made them ran."""
    teams.delete()
    summed = team_groups_of_rollups(hourly.order_by().values_list(*ROLLUP_SUM_COLUMNS).iterator(chunk_size=5000))
    made = []
    for key, group in summed.items():
        team_rollup = teams.model(**team_key_fields(key))
        rollup_merge(team_rollup, group)
        made.append(team_rollup)
    teams.model.objects.bulk_create(made, batch_size=1000)
    return len(made)


@dataclass
class RollupSelection:
    """The rollups of a user's filters: `parts` are summed for the figures (team rollups and hourly rollups,
    never counting a job twice); `hourly` holds the same jobs in hourly rollups, which alone say whether any
    was purged."""

    parts: list[QuerySet]
    hourly: QuerySet[JobRollup]


def _matching(rollups: QuerySet, filters: HistoryFilters) -> QuerySet:
    """The window (as job_history_queryset reads it) and the states, which both levels know; the script and the
    search (hourly rollups only)."""
    created_from = filters.created_from
    if created_from is None and filters.created_to is None and not filters.search:
        created_from = default_window_start()
    if created_from is not None:
        rollups = rollups.filter(hour__gte=created_from)
    if filters.created_to is not None:
        rollups = rollups.filter(hour__lt=filters.created_to)
    if filters.state:
        rollups = rollups.filter(state__in=filters.state)
    if filters.script:
        rollups = rollups.filter(script_name=filters.script)
    if filters.search:
        term = filters.search.strip()
        try:
            uuid_lib.UUID(term)
        except ValueError:
            rollups = rollups.filter(Q(script_name__istartswith=term))
        else:
            return rollups.none()  # a purged job's own id is not kept
    return rollups


def rollups_for(user, filters: HistoryFilters) -> RollupSelection:
    """The rollups `user` may see matching `filters`."""
    if not user.is_authenticated:
        return RollupSelection([], JobRollup.objects.none())
    admin = is_admin(user)
    teams = [] if admin else visible_team_ids(user)
    hourly = _matching(JobRollup.objects.all(), filters)
    if filters.kind:
        hourly = hourly.filter(kind__in=filters.kind)
    if filters.owner:
        hourly = hourly.filter(owner__username=filters.owner)
    if filters.connection:
        hourly = hourly.filter(connection_id=filters.connection)
    own = Q(owner=user)
    if not admin:
        hourly = hourly.filter(own | Q(team_id__in=teams) if teams else own)
    chosen = filters.kind or filters.owner or filters.connection or filters.script or filters.search
    if chosen or not (admin or teams):
        return RollupSelection([hourly], hourly)
    if admin:
        return RollupSelection([_matching(TeamRollup.objects.all(), filters)], hourly)
    # Whole teams from the team rollups; the viewer's own jobs filed under any other team (or none) by the hour.
    whole = _matching(TeamRollup.objects.filter(team_id__in=teams), filters)
    rest = _matching(JobRollup.objects.filter(own).exclude(team_id__in=teams), filters)
    return RollupSelection([whole, rest], hourly)


# --- Reading them for analytics ------------------------------------------------------------------


def weighted_percentile(pairs: list[tuple[float, int]], q: float) -> float | None:
    """jobs.selectors.analytics.percentile over values that each stand for `weight` equal values (sorted by value)."""
    total = sum(weight for _, weight in pairs)
    if not total:
        return None
    h = (total - 1) * q
    low = math.floor(h)
    high = min(low + 1, total - 1)

    def at(rank: int) -> float:
        seen = 0
        for value, weight in pairs:
            seen += weight
            if rank < seen:
                return value
        return pairs[-1][0]

    return at(low) + (h - low) * (at(high) - at(low))
