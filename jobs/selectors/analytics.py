"""Timing analytics over the jobs a user may see, with the history page's filters.

Definitions (the page and its JSON endpoints say the same):
- A job's **duration** is `finished_at - created_at` of a succeeded job: what the analyst waited, end to end.
  Its **day** is the day of `created_at` in the viewer's time zone.
- **Percentiles** p50 and p95 interpolate linearly between the closest ranks: for n sorted values
  x[0..n-1] and a fraction q, h = (n - 1) * q and p = x[floor h] + (h - floor h) * (x[floor h + 1] - x[floor h]).
  That is numpy's default (`method="linear"`) and PostgreSQL's `percentile_cont`, which computes them in the
  database on PostgreSQL; elsewhere they are computed here over at most MAX_ROWS of the newest matching jobs
  (an indexed, bounded query).
- **Phases** of a succeeded job, as on the job page (jobs.selectors.timing.job_phases, the one definition): queue wait
  `submitted_at - created_at`; OML time up to the last status request OML answered "still running"
  (`oml_last_running_at - submitted_at`; sync calls: `finished_at - submitted_at`); detection lag, the span
  in which OML's finish went unseen (`oml_finished_at - oml_last_running_at`, an upper bound); fetch time
  `result_fetched_at - oml_finished_at`. OML's real time lies between the OML phase and OML + lag
  (jobs.selectors.timing.oml_bounds). Each day shows the mean of each phase, so they stack to the mean total.
- The figures come from the rollups (jobs.services.rollups: hourly, and per team where no owner, kind or connection is
  chosen), kept as jobs end and when retention removes them: outcomes and phase means exactly. Percentiles are
  exact (from the rows) while the window holds at most EXACT_MAX succeeded jobs and none was purged; beyond,
  they are read from log buckets, within about 2.5 % of the exact one (`approximate` in trend.json says which,
  and the page says so).
- A rollup's hour is counted in the viewer's day it starts in: in a time zone whose offset is not a whole
  number of hours (e.g. +05:30), the jobs of the part of an hour that crosses local midnight count on the day
  that hour starts in. Searches (a job id, an OML job id) and "pinned only" read the rows (exact).
- **Failure rate** of a day: (failed + timed out) / (succeeded + failed + timed out). Cancelled jobs are a
  user's choice, not a failure, and jobs still running have no outcome: neither counts.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime

from django.db import connection, transaction
from django.db.models import Aggregate, Count, DurationField, ExpressionWrapper, F, FloatField, Func, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from jobs.models import Job, TeamRollup
from jobs.selectors.timing import COLUMNS as PHASE_COLUMNS
from jobs.selectors.timing import job_phases
from jobs.services.rollups import PHASES, RollupSelection, bucket_value, weighted_percentile
from jobs.states import TERMINAL_STATES, JobState
from jobs.templatetags.jobs_tags import zoned

MAX_ROWS = 200_000
# Past this many succeeded jobs in the window, the trend's percentiles are read from the rollups' buckets. Not
# lower: an analyst's year (19,041 succeeded jobs) cost the same server CPU either way, 263 ms per request, most
# of it in drawing 15,000 script-days (bench/history.py), and exact figures are worth keeping at that price.
EXACT_MAX = 20_000
GANTT_MAX_JOBS = 300
FAILED_STATES = (JobState.FAILED, JobState.TIMED_OUT)
STATE_ORDER = [
    JobState.SUCCEEDED,
    JobState.FAILED,
    JobState.TIMED_OUT,
    JobState.CANCELLED,
]


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default, PostgreSQL's percentile_cont)."""
    if not sorted_values:
        return None
    h = (len(sorted_values) - 1) * q
    low = math.floor(h)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (h - low) * (sorted_values[high] - sorted_values[low])


class PercentileCont(Aggregate):
    """PostgreSQL's ordered-set aggregate percentile_cont(q) WITHIN GROUP (ORDER BY expression)."""

    function = "percentile_cont"
    name = "PercentileCont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression, fraction: float, **extra):
        super().__init__(expression, fraction=repr(float(fraction)), output_field=FloatField(), **extra)


class EpochSeconds(Func):
    """Seconds in a PostgreSQL interval."""

    template = "EXTRACT(EPOCH FROM %(expressions)s)"
    output_field = FloatField()


def _seconds(start, end) -> float | None:
    return (end - start).total_seconds() if start and end else None


def _day(moment: datetime) -> date:
    return timezone.localtime(moment).date()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# --- Duration trend -----------------------------------------------------------------------------


@dataclass
class TrendPoint:
    script: str
    day: date
    jobs: int
    p50: float | None
    p95: float | None


def trend_figures(jobs: QuerySet[Job], rollups: RollupSelection | None = None) -> tuple[list[TrendPoint], bool]:
    """p50 and p95 of the duration of succeeded jobs, per script and day, and whether they are approximate:
    exact (from the rows) while `trend_is_exact`, else read from the rollups' buckets. The exactness is
    decided first, by a sum over the rollups that reads no histogram: a window that is exact then costs no
    unnesting (an analyst's year: bench/history.py)."""
    if rollups is None or trend_is_exact(rollups):
        return _trend_from_rows(jobs), False
    return trend_from_buckets(rollups), True


def duration_trend(jobs: QuerySet[Job], rollups: RollupSelection | None = None) -> list[TrendPoint]:
    """The points of trend_figures."""
    return trend_figures(jobs, rollups)[0]


def _trend_from_rows(jobs: QuerySet[Job]) -> list[TrendPoint]:
    succeeded = jobs.filter(state=JobState.SUCCEEDED, finished_at__isnull=False).order_by()
    if connection.vendor == "postgresql":
        duration = EpochSeconds(ExpressionWrapper(F("finished_at") - F("created_at"), output_field=DurationField()))
        rows = (
            succeeded.annotate(day=TruncDate("created_at", tzinfo=timezone.get_current_timezone()))
            .values("script_name", "day")
            .annotate(n=Count("id"), p50=PercentileCont(duration, 0.5), p95=PercentileCont(duration, 0.95))
            .order_by("script_name", "day")
        )
        return [TrendPoint(r["script_name"], r["day"], r["n"], _round(r["p50"]), _round(r["p95"])) for r in rows]
    groups: dict[tuple[str, date], list[float]] = defaultdict(list)
    rows = succeeded.order_by("-created_at", "-id").values_list("script_name", "created_at", "finished_at")
    for script, created, finished in rows[:MAX_ROWS]:
        groups[(script, _day(created))].append((finished - created).total_seconds())
    points = []
    for (script, day), values in sorted(groups.items()):
        values.sort()
        points.append(
            TrendPoint(script, day, len(values), _round(percentile(values, 0.5)), _round(percentile(values, 0.95)))
        )
    return points


def trend_is_exact(rollups: RollupSelection) -> bool:
    """Whether the percentiles of these rollups' jobs are computed exactly from the rows: none was purged (the
    hourly rollups' partial index) and at most EXACT_MAX succeeded (indexed sums over the rollups)."""
    if rollups.hourly.filter(state=JobState.SUCCEEDED, purged=True).exists():
        return False
    succeeded = sum(
        part.filter(state=JobState.SUCCEEDED).order_by().aggregate(n=Sum("jobs"))["n"] or 0 for part in rollups.parts
    )
    return succeeded <= EXACT_MAX


def trend_from_buckets(rollups: RollupSelection) -> list[TrendPoint]:
    return _trend_from_counts([row for part in rollups.parts for row in bucket_counts(part)])


def _trend_from_counts(counts: list[tuple[str, date, int, int]]) -> list[TrendPoint]:
    groups: dict[tuple[str, date], dict[int, int]] = defaultdict(dict)
    for script, day, bucket, n in counts:
        groups[(script, day)][bucket] = groups[(script, day)].get(bucket, 0) + n
    points = []
    for (script, day), by_bucket in sorted(groups.items()):
        pairs = [(bucket_value(bucket), n) for bucket, n in sorted(by_bucket.items())]
        n = sum(weight for _, weight in pairs)
        if not n:
            continue
        p50, p95 = weighted_percentile(pairs, 0.5), weighted_percentile(pairs, 0.95)
        points.append(TrendPoint(script, day, n, _round(p50), _round(p95)))
    return points


def bucket_counts(rollups: QuerySet) -> list[tuple[str, date, int, int]]:
    """(script, day in the current zone, duration bucket, jobs) of the succeeded jobs of `rollups` (hourly
    rollups, or team rollups whose histograms are kept per script), summed.

    On PostgreSQL the histograms are unnested and summed by the database (a window of a million jobs holds
    about as many histogram entries: reading them into Python took seconds; bench/history.py); elsewhere here.
    """
    per_script = rollups.model is TeamRollup
    succeeded = rollups.filter(state=JobState.SUCCEEDED).order_by()
    succeeded = (
        succeeded.values("hour", "durations") if per_script else succeeded.values("hour", "durations", "script_name")
    )
    if connection.vendor != "postgresql":
        return bucket_counts_in_python(succeeded)
    inner, params = succeeded.query.sql_with_params()
    # The ORM's own statement inside, with its parameters: no text of the request is pasted in.
    if per_script:
        source = (
            f"FROM ({inner}) AS r(hour, durations) CROSS JOIN LATERAL jsonb_each(r.durations) AS s(script, counts) "
            "CROSS JOIN LATERAL jsonb_each_text(s.counts) AS b"
        )
        script = "s.script"
    else:
        source = (
            f"FROM ({inner}) AS r(hour, durations, script_name) CROSS JOIN LATERAL jsonb_each_text(r.durations) AS b"
        )
        script = "r.script_name"
    statement = (
        f"SELECT {script}, (r.hour AT TIME ZONE %s)::date, b.key::integer, SUM(b.value::integer)::bigint "
        f"{source} GROUP BY 1, 2, 3"
    )
    # The planner counts 100 rows for each jsonb_each_text (most rollups hold one bucket): that puts the
    # statement past the thresholds of JIT compilation and parallel workers, which on a week of a million jobs
    # cost more than the statement itself (EXPLAIN ANALYZE in bench/history.py: about 130 ms without, 270 to
    # 400 ms with). Both are turned off for this statement's transaction only.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cursor.execute(statement, [timezone.get_current_timezone_name(), *params])
        return cursor.fetchall()


def bucket_counts_in_python(succeeded) -> list[tuple[str, date, int, int]]:
    """bucket_counts read row by row (any database; the answer the SQL is tested against): `succeeded` gives
    hour and durations, and script_name for hourly rollups (team rollups keep their histograms per script)."""
    totals: dict[tuple[str, date, int], int] = defaultdict(int)
    days: dict[datetime, date] = {}
    for row in succeeded.iterator(chunk_size=5000):
        hour = row["hour"]
        day = days.get(hour)
        if day is None:
            day = days[hour] = _day(hour)
        histograms = {row["script_name"]: row["durations"]} if "script_name" in row else row["durations"]
        for script, counts in histograms.items():
            for bucket, n in counts.items():
                totals[(script, day, int(bucket))] += n
    return [(script, day, bucket, n) for (script, day, bucket), n in totals.items()]


# --- Phases ---------------------------------------------------------------------------------------


@dataclass
class PhasePoint:
    day: date
    jobs: int
    queue: float | None
    oml: float | None
    fetch: float | None
    lag: float | None = None


def phase_split(jobs: QuerySet[Job], rollups: RollupSelection | None = None) -> list[PhasePoint]:
    """Mean queue wait, OML time and fetch time of succeeded jobs, per day: summed in the database from the
    rollups, or from the rows (searches, pinned only)."""
    days: dict[date, dict] = defaultdict(lambda: defaultdict(float))
    if rollups is not None:
        sums = [f"{name}_{part}" for name in PHASES for part in ("sum", "n")]
        for part in rollups.parts:
            rows = (
                part.filter(state=JobState.SUCCEEDED)
                .order_by()
                .annotate(day=TruncDate("hour", tzinfo=timezone.get_current_timezone()))
                .values("day")
                .annotate(**{f"total_{name}": Sum(name) for name in ("jobs", *sums)})
            )
            for row in rows:
                bucket = days[row["day"]]
                for name in ("jobs", *sums):
                    bucket[name] += row[f"total_{name}"]
    else:
        rows = jobs.filter(state=JobState.SUCCEEDED).order_by("-created_at", "-id").values_list(*PHASE_COLUMNS)
        for values in rows[:MAX_ROWS]:
            job = dict(zip(PHASE_COLUMNS, values, strict=True))
            bucket = days[_day(job["created_at"])]
            bucket["jobs"] += 1
            phases = job_phases(job)
            for name in PHASES:
                value = phases[name]
                if value is not None:
                    bucket[f"{name}_sum"] += value
                    bucket[f"{name}_n"] += 1

    def mean(bucket, name: str) -> float | None:
        return _round(bucket[f"{name}_sum"] / bucket[f"{name}_n"]) if bucket[f"{name}_n"] else None

    return [
        PhasePoint(day, int(b["jobs"]), mean(b, "queue"), mean(b, "oml"), mean(b, "fetch"), mean(b, "lag"))
        for day, b in sorted(days.items())
    ]


# --- Outcomes -------------------------------------------------------------------------------------


@dataclass
class OutcomeDay:
    day: date
    counts: dict[str, int]

    @property
    def failure_rate(self) -> float | None:
        return failure_rate(self.counts)


def failure_rate(counts: dict[str, int]) -> float | None:
    failed = sum(counts.get(state, 0) for state in FAILED_STATES)
    decided = failed + counts.get(JobState.SUCCEEDED, 0)
    return round(failed / decided, 4) if decided else None


def outcomes(jobs: QuerySet[Job], rollups: RollupSelection | None = None) -> list[OutcomeDay]:
    """Jobs per day by final state, counted in the database (from the rollups, or the rows)."""
    tz = timezone.get_current_timezone()
    if rollups is not None:
        counted = [
            part.filter(state__in=sorted(TERMINAL_STATES))
            .order_by()
            .annotate(day=TruncDate("hour", tzinfo=tz))
            .values("day", "state")
            .annotate(n=Sum("jobs"))
            for part in rollups.parts
        ]
    else:
        counted = [
            jobs.filter(state__in=sorted(TERMINAL_STATES))
            .order_by()
            .annotate(day=TruncDate("created_at", tzinfo=tz))
            .values("day", "state")
            .annotate(n=Count("id"))
        ]
    days: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for rows in counted:
        for row in rows:
            days[row["day"]][row["state"]] += row["n"]
    return [
        OutcomeDay(day, {state: counts.get(state, 0) for state in STATE_ORDER}) for day, counts in sorted(days.items())
    ]


def outcome_totals(days: list[OutcomeDay]) -> dict[str, int]:
    totals = dict.fromkeys(STATE_ORDER, 0)
    for day in days:
        for state, n in day.counts.items():
            totals[state] += n
    return totals


# --- Gantt ----------------------------------------------------------------------------------------


@dataclass
class GanttBar:
    uuid: str
    script: str
    state: str
    created_at: datetime
    # Phases as (name, start, end) in seconds after the window's first start.
    segments: list[tuple[str, float, float]]


def gantt(jobs: QuerySet[Job], now: datetime | None = None) -> tuple[datetime | None, list[GanttBar]]:
    """The newest GANTT_MAX_JOBS matching jobs, oldest first, each as its queue / OML / fetch segments."""
    now = now or timezone.now()
    rows = list(
        jobs.order_by("-created_at", "-id").values_list(
            "uuid",
            "script_name",
            "state",
            "async_flag",
            "created_at",
            "submitted_at",
            "oml_finished_at",
            "result_fetched_at",
            "finished_at",
        )[:GANTT_MAX_JOBS]
    )
    rows.reverse()
    if not rows:
        return None, []
    origin = rows[0][4]
    bars = []
    for uuid, script, state, is_async, created, submitted, oml_finished, fetched, finished in rows:
        end = finished or now
        marks = [("queue", created, submitted or end)]
        if submitted:
            marks.append(("oml", submitted, (oml_finished or end) if is_async else end))
        if oml_finished and is_async:
            marks.append(("fetch", oml_finished, fetched or end))
        segments = [
            (name, (start - origin).total_seconds(), (stop - origin).total_seconds())
            for name, start, stop in marks
            if stop >= start
        ]
        bars.append(GanttBar(str(uuid), script, state, created, segments))
    return origin, bars


# --- JSON ---------------------------------------------------------------------------------------


def trend_json(points: list[TrendPoint], approximate: bool = False) -> dict:
    """The chart's series, and the table's rows (script, day, jobs, p50, p95)."""
    days = sorted({p.day for p in points})
    scripts = sorted({p.script for p in points})
    index = {(p.script, p.day): p for p in points}
    jobs: dict[str, int] = defaultdict(int)
    for p in points:
        jobs[p.script] += p.jobs
    series = []
    for script in scripts:
        for q in ("p50", "p95"):
            values = [getattr(index[(script, d)], q) if (script, d) in index else None for d in days]
            series.append({"script": script, "percentile": q, "values": values, "jobs": jobs[script]})
    return {
        "days": [d.isoformat() for d in days],
        "series": series,
        "rows": [[p.script, p.day.isoformat(), p.jobs, p.p50, p.p95] for p in points],
        "approximate": approximate,
    }


def phases_json(points: list[PhasePoint]) -> dict:
    return {
        "days": [p.day.isoformat() for p in points],
        "queue": [p.queue for p in points],
        "oml": [p.oml for p in points],
        "fetch": [p.fetch for p in points],
        "lag": [p.lag for p in points],
        "jobs": [p.jobs for p in points],
    }


def outcomes_json(days: list[OutcomeDay]) -> dict:
    totals = outcome_totals(days)
    return {
        "days": [d.day.isoformat() for d in days],
        "states": [
            {"state": str(s), "label": JobState(s).label, "counts": [d.counts[s] for d in days]} for s in STATE_ORDER
        ],
        "failure_rate": [d.failure_rate for d in days],
        "totals": [totals[s] for s in STATE_ORDER],
        "failure_rate_total": failure_rate(totals),
    }


def gantt_json(origin: datetime | None, bars: list[GanttBar]) -> dict:
    return {
        "origin": origin.isoformat() if origin else None,
        "origin_label": zoned(origin),
        "jobs": [
            {
                "uuid": bar.uuid,
                "created": zoned(bar.created_at),
                "label": f"{bar.script} {bar.uuid[:8]}",
                "script": bar.script,
                "state": bar.state,
                "segments": [{"phase": name, "start": start, "end": end} for name, start, end in bar.segments],
            }
            for bar in bars
        ],
    }
