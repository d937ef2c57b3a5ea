"""Hourly rollups of finished jobs (JobRollup): what analytics reads, kept up to date as jobs end.

- A rollup counts the jobs of one hour of creation (UTC), owner, team, connection, script, kind and final
  state, with the sums of their phases (succeeded jobs, as jobs.timing.job_phases defines them) and their durations in a
  log-spaced histogram (each bucket BASE times as wide as the one below, so a percentile read from it is within
  half a bucket, about 2.5 %, of the exact one).
- `rollup_job_finished` adds a job in the transaction of its terminal transition (jobs.services): a job that
  ends is in the rollups exactly when its row says it ended.
- Rollups come in two parts: the live part (`purged` false) says what the job rows say and can be rebuilt from
  them (`rollups_rebuild`, `manage.py rollups_rebuild`, for rows written any other way); the purged part holds
  jobs retention removed. `rollups_purge` moves jobs about to be deleted from the first to the second, in the
  purge's transaction: each job counts once, before and after.
- `rollups_for` selects the rollups a user may see that match the history's filters, as
  jobs.selectors.job_history_queryset selects rows.
"""

from __future__ import annotations

import math
import uuid as uuid_lib
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Q, QuerySet

from .access import visibility_filter
from .models import Job, JobRollup
from .selectors import HistoryFilters, default_window_start
from .states import TERMINAL_STATES, JobState
from .timing import job_phases

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
# The phases a rollup sums (jobs.timing.job_phases: the job page's, analytics' and the statistics' definition).
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
        group = groups.setdefault(key, {"jobs": 0, "sums": defaultdict(float), "n": defaultdict(int), "hist": {}})
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


def rollup_add(rows: Iterable[tuple], *, purged: bool = False) -> None:
    """Add jobs (tuples of COLUMNS) to their rollups of the live part (or the purged part), in the caller's
    transaction. Rollups are locked in key order, so that two transactions adding to the same ones wait for
    each other rather than deadlock."""
    groups = rollup_groups(rows)
    with transaction.atomic():
        for key, group in sorted(groups.items(), key=lambda item: [str(part) for part in item[0]]):
            fields = rollup_key_fields(key)
            rollup = JobRollup.objects.select_for_update().filter(purged=purged, **fields).first() or JobRollup(
                purged=purged, **fields
            )
            rollup_merge(rollup, group)
            rollup.save()


def rollup_merge(rollup: JobRollup, group: dict) -> None:
    rollup.jobs += group["jobs"]
    for name in PHASES:
        setattr(rollup, f"{name}_sum", getattr(rollup, f"{name}_sum") + group["sums"][name])
        setattr(rollup, f"{name}_n", getattr(rollup, f"{name}_n") + group["n"][name])
    merged = dict(rollup.durations)
    for bucket, count in group["hist"].items():
        merged[bucket] = merged.get(bucket, 0) + count
    rollup.durations = merged


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
    them), or for the given hours only. Returns the number of jobs counted.

    1. Delete the live rollups of those hours.
    2. Read the finished jobs of those hours in REBUILD_BATCH rows at a time (keyset on id) and sum them per key.
    3. Write the sums, in the caller's transaction (or one of its own).
    """
    jobs = Job.objects.filter(state__in=TERMINAL_STATES)
    live = JobRollup.objects.filter(purged=False)
    if hours is not None:
        hours = sorted({_hour(hour) for hour in hours})
        if not hours:
            return 0
        condition = Q()
        for hour in hours:
            condition |= Q(created_at__gte=hour, created_at__lt=hour + timedelta(hours=1))
        jobs, live = jobs.filter(condition), live.filter(hour__in=hours)
    else:
        if start is not None:
            jobs, live = jobs.filter(created_at__gte=_hour(start)), live.filter(hour__gte=_hour(start))
        if end is not None:
            jobs, live = jobs.filter(created_at__lt=_hour(end)), live.filter(hour__lt=_hour(end))
    counted = 0
    with transaction.atomic():
        # 1.
        live.delete()
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
                total = totals.get(key)
                if total is None:
                    totals[key] = group
                    continue
                total["jobs"] += group["jobs"]
                for name in PHASES:
                    total["sums"][name] += group["sums"][name]
                    total["n"][name] += group["n"][name]
                for bucket, count in group["hist"].items():
                    total["hist"][bucket] = total["hist"].get(bucket, 0) + count
        # 3.
        made = []
        for key, group in totals.items():
            rollup = JobRollup(purged=False, **rollup_key_fields(key))
            rollup_merge(rollup, group)
            made.append(rollup)
        JobRollup.objects.bulk_create(made, batch_size=1000)
    return counted


def rollups_for(user, filters: HistoryFilters) -> QuerySet[JobRollup]:
    """The rollups `user` may see matching `filters` (the window as job_history_queryset reads it)."""
    if not user.is_authenticated:
        return JobRollup.objects.none()
    rollups = JobRollup.objects.all()
    condition = visibility_filter(user)
    if condition is not None:
        rollups = rollups.filter(condition)
    created_from = filters.created_from
    if created_from is None and filters.created_to is None and not filters.search:
        created_from = default_window_start()
    if created_from is not None:
        rollups = rollups.filter(hour__gte=created_from)
    if filters.created_to is not None:
        rollups = rollups.filter(hour__lt=filters.created_to)
    if filters.state:
        rollups = rollups.filter(state__in=filters.state)
    if filters.kind:
        rollups = rollups.filter(kind__in=filters.kind)
    if filters.script:
        rollups = rollups.filter(script_name=filters.script)
    if filters.owner:
        rollups = rollups.filter(owner__username=filters.owner)
    if filters.connection:
        rollups = rollups.filter(connection_id=filters.connection)
    if filters.search:
        term = filters.search.strip()
        try:
            uuid_lib.UUID(term)
        except ValueError:
            rollups = rollups.filter(Q(script_name__istartswith=term))
        else:
            return JobRollup.objects.none()  # a purged job's own id is not kept
    return rollups


# --- Reading them for analytics ------------------------------------------------------------------


def weighted_percentile(pairs: list[tuple[float, int]], q: float) -> float | None:
    """jobs.analytics.percentile over values that each stand for `weight` equal values (sorted by value)."""
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
