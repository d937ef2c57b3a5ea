"""Rollups of purged jobs (JobRollup): what analytics keeps of the jobs retention removes.

- `rollup_purged` runs in the purge's transaction, before the rows go: it adds each job to the rollup of its
  hour, owner, team, connection, script, kind and state, with the phases as jobs.analytics defines them
  (succeeded jobs) and its duration in a log-spaced histogram bucket (each bucket BASE times as wide as the
  one below, so a percentile read from it is within half a bucket, about 2.5 %, of the exact one).
- `rollups_for` selects the rollups a user may see that match the history's filters, as
  jobs.selectors.job_history_queryset selects rows.
"""

from __future__ import annotations

import math
import uuid as uuid_lib
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from .access import visibility_filter
from .models import JobRollup
from .selectors import DEFAULT_WINDOW, HistoryFilters
from .states import JobState
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


def duration_bucket(seconds: float) -> int:
    return max(0, math.floor(math.log(max(seconds, FLOOR) / FLOOR) / math.log(BASE)))


def bucket_value(index: int) -> float:
    """The geometric middle of a bucket: the value its durations are read back as."""
    return FLOOR * BASE ** (index + 0.5)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


def _hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def rollup_purged(rows: Iterable[tuple]) -> None:
    """Add jobs about to be deleted (tuples of COLUMNS) to their rollups, in the caller's transaction."""
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
        # The phases of jobs.timing (the job page's and analytics'); a rollup keeps no detection lag.
        phases = job_phases(job)
        for name in ("queue", "oml", "fetch"):
            seconds = phases[name]
            if seconds is not None:
                group["sums"][name] += seconds
                group["n"][name] += 1
        total = _seconds(job["created_at"], job["finished_at"])
        if total is not None:
            bucket = str(duration_bucket(total))
            group["hist"][bucket] = group["hist"].get(bucket, 0) + 1
    with transaction.atomic():
        for key, group in sorted(groups.items(), key=lambda item: [str(part) for part in item[0]]):
            hour, owner_id, team_id, connection_id, script, kind, state = key
            rollup = (
                JobRollup.objects.select_for_update()
                .filter(
                    hour=hour,
                    owner_id=owner_id,
                    team_id=team_id,
                    connection_id=connection_id,
                    script_name=script,
                    kind=kind,
                    state=state,
                )
                .first()
            ) or JobRollup(
                hour=hour,
                owner_id=owner_id,
                team_id=team_id,
                connection_id=connection_id,
                script_name=script,
                kind=kind,
                state=state,
            )
            rollup.jobs += group["jobs"]
            for name in ("queue", "oml", "fetch"):
                setattr(rollup, f"{name}_sum", getattr(rollup, f"{name}_sum") + group["sums"][name])
                setattr(rollup, f"{name}_n", getattr(rollup, f"{name}_n") + group["n"][name])
            merged = dict(rollup.durations)
            for bucket, count in group["hist"].items():
                merged[bucket] = merged.get(bucket, 0) + count
            rollup.durations = merged
            rollup.save()


def rollups_for(user, filters: HistoryFilters) -> QuerySet[JobRollup]:
    """The rollups `user` may see matching `filters` (the window as job_history_queryset reads it)."""
    if not user.is_authenticated or filters.pinned:
        return JobRollup.objects.none()  # a pinned job is never purged
    rollups = JobRollup.objects.all()
    condition = visibility_filter(user)
    if condition is not None:
        rollups = rollups.filter(condition)
    created_from = filters.created_from
    if created_from is None and filters.created_to is None and not filters.search:
        created_from = timezone.now() - DEFAULT_WINDOW
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


def _day(moment: datetime):
    return timezone.localtime(moment).date()


def rollup_durations(purged: QuerySet[JobRollup] | None) -> dict[tuple[str, object], list[tuple[float, int]]]:
    """Succeeded purged jobs' durations per (script, day) as (bucket value, count) pairs."""
    found: dict[tuple[str, object], list[tuple[float, int]]] = defaultdict(list)
    if purged is None:
        return found
    for script, hour, durations in purged.filter(state=JobState.SUCCEEDED).values_list(
        "script_name", "hour", "durations"
    ):
        for bucket, count in durations.items():
            found[(script, _day(hour))].append((bucket_value(int(bucket)), int(count)))
    return found


def rollup_phases(purged: QuerySet[JobRollup] | None) -> dict[object, dict[str, float]]:
    """Succeeded purged jobs per day: their number, and the sum and count of each phase."""
    days: dict[object, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    if purged is None:
        return days
    rows = purged.filter(state=JobState.SUCCEEDED).values_list(
        "hour", "jobs", "queue_sum", "queue_n", "oml_sum", "oml_n", "fetch_sum", "fetch_n"
    )
    for hour, jobs, *sums in rows:
        day = days[_day(hour)]
        day["jobs"] += jobs
        for name, (total, n) in zip(("queue", "oml", "fetch"), zip(sums[::2], sums[1::2], strict=True), strict=True):
            day[f"{name}_sum"] += total
            day[f"{name}_n"] += n
    return days


def rollup_outcomes(purged: QuerySet[JobRollup] | None) -> dict[object, dict[str, int]]:
    """Purged jobs per day and final state."""
    days: dict[object, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    if purged is None:
        return days
    for hour, state, jobs in purged.values_list("hour", "state", "jobs"):
        days[_day(hour)][state] += jobs
    return days
