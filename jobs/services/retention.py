"""Retention: finished jobs lose their result bodies after N days and their rows after M days, per team.

The purge (a Celery beat task every RETENTION_PURGE_INTERVAL, and `manage.py jobs_purge`) works in bounded
batches, each its own short transaction, so it never holds a long lock and a purge killed at any moment
leaves a consistent database: every batch either happened whole or not at all, and the next run carries on.
It never removes a pinned job or its result, and never the audit trail (entries about purged jobs keep their
uuid). What learned polling needs is in ScriptStats, what /metrics needs in the tally and the counters, what
analytics needs of removed rows in JobRollup.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.utils import timezone

from accounts.models import Team
from jobs.models import Job, JobPin, JobResult, JobResultChunk, RetentionPolicy
from jobs.results.renditions import results_renditions_delete
from jobs.services import hooks
from jobs.services.rollups import rollups_purge, rollups_rebuild
from jobs.services.tally import TallyChange, tally_add
from metrics import recorder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rule:
    """One retention applied to a set of teams (and, for the deployment's default, to jobs of no team)."""

    result_days: int
    job_days: int
    team_ids: tuple[int, ...]
    includes_no_team: bool

    def jobs_filter(self, prefix: str = "") -> Q:
        condition = Q(**{f"{prefix}team_id__in": self.team_ids})
        if self.includes_no_team:
            condition |= Q(**{f"{prefix}team_id__isnull": True})
        return condition


def effective_policy(policy: RetentionPolicy | None) -> tuple[int, int]:
    """(result days, job days) of a team's policy, the deployment's defaults filling what it leaves empty."""
    result_days = settings.RETENTION_RESULT_DAYS
    job_days = settings.RETENTION_JOB_DAYS
    if policy is not None:
        result_days = result_days if policy.result_days is None else policy.result_days
        job_days = job_days if policy.job_days is None else policy.job_days
    return result_days, job_days


def rules() -> list[Rule]:
    """The teams grouped by the retention they get; jobs of no team get the defaults."""
    policies = {policy.team_id: policy for policy in RetentionPolicy.objects.all()}
    default = (settings.RETENTION_RESULT_DAYS, settings.RETENTION_JOB_DAYS)
    groups: dict[tuple[int, int], list[int]] = {default: []}
    for team_id in Team.objects.values_list("pk", flat=True):
        groups.setdefault(effective_policy(policies.get(team_id)), []).append(team_id)
    return [
        Rule(result_days=days[0], job_days=days[1], team_ids=tuple(sorted(ids)), includes_no_team=days == default)
        for days, ids in groups.items()
    ]


_PINNED = Exists(JobPin.objects.filter(job_id=OuterRef("pk")))


def _result_candidates(rule: Rule, now: datetime):
    cutoff = now - timedelta(days=rule.result_days)
    return Job.objects.filter(rule.jobs_filter(), result__stored_at__lt=cutoff).exclude(_PINNED)


def _job_candidates(rule: Rule, now: datetime):
    cutoff = now - timedelta(days=rule.job_days)
    return Job.objects.filter(rule.jobs_filter(), finished_at__lt=cutoff).exclude(_PINNED)


@dataclass
class PurgeReport:
    results: int = 0
    result_bytes: int = 0
    jobs: int = 0
    batches: int = 0
    per_team: dict[int | None, dict[str, int]] = field(default_factory=dict)

    def add(self, team_id: int | None, **amounts: int) -> None:
        totals = self.per_team.setdefault(team_id, {"results": 0, "result_bytes": 0, "jobs": 0})
        for name, amount in amounts.items():
            totals[name] += amount
            setattr(self, name, getattr(self, name) + amount)

    def as_dict(self) -> dict[str, int]:
        return {"results": self.results, "result_bytes": self.result_bytes, "jobs": self.jobs}


def purge_plan(now: datetime | None = None) -> PurgeReport:
    """What a purge would remove now, without removing anything (`jobs_purge --dry-run`, the storage page)."""
    now = now or timezone.now()
    report = PurgeReport()
    for rule in rules():
        if rule.result_days:
            rows = (
                _result_candidates(rule, now)
                .values_list("team_id")
                .annotate(n=Count("id"), size=Sum("result__size_bytes"))
                .order_by()
            )
            for team_id, n, size in rows:
                report.add(team_id, results=n, result_bytes=size or 0)
        if rule.job_days:
            for team_id, n in _job_candidates(rule, now).values_list("team_id").annotate(n=Count("id")).order_by():
                report.add(team_id, jobs=n)
    return report


def _purge_results_batch(rule: Rule, now: datetime, report: PurgeReport) -> int:
    """Remove the result bodies of one batch of jobs, in one transaction; returns how many."""
    batch = settings.RETENTION_PURGE_BATCH
    with transaction.atomic():
        # Locked and skipped when locked: two purges at once take different jobs, and never count one twice.
        rows = list(
            _result_candidates(rule, now)
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("result__stored_at")
            .values_list("pk", "state", "connection_id", "kind", "team_id", "result__id", "result__size_bytes")[:batch]
        )
        if not rows:
            return 0
        result_ids = [row[5] for row in rows]
        results_renditions_delete(result_ids)
        JobResultChunk.objects.filter(result_id__in=result_ids).delete()
        JobResult.objects.filter(pk__in=result_ids).delete()
        Job.objects.filter(pk__in=[row[0] for row in rows]).update(result_purged_at=now)
        tally_add(
            TallyChange(state, connection_id, kind, team_id, results=-1, result_bytes=-size)
            for _, state, connection_id, kind, team_id, _, size in rows
        )
    for _, _, _, _, team_id, _, size in rows:
        report.add(team_id, results=1, result_bytes=size)
    return len(rows)


def _purge_jobs_batch(rule: Rule, now: datetime, report: PurgeReport) -> int:
    """Remove one batch of job rows (with their transitions and any result), in one transaction."""
    batch = settings.RETENTION_PURGE_BATCH
    with transaction.atomic():
        rows = list(
            _job_candidates(rule, now)
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("finished_at")
            .values_list("pk", "state", "connection_id", "kind", "team_id")[:batch]
        )
        if not rows:
            return 0
        ids = [row[0] for row in rows]
        results = list(JobResult.objects.filter(job_id__in=ids).values_list("job_id", "size_bytes", "pk"))
        sizes = {job_id: size for job_id, size, _ in results}
        results_renditions_delete(pk for _, _, pk in results)
        # Analytics keeps what it needs of them: they were rolled up as they ended; their share moves to the
        # rollups of purged jobs (jobs.services.rollups), so that each counts once before and after.
        hours = rollups_purge(job_ids=ids)
        # The ORM's delete follows every relation: transitions, results and their chunks, the lineage of
        # re-runs (children keep living, without their parent).
        Job.objects.filter(pk__in=ids).delete()
        rollups_rebuild(hours=hours)
        tally_add(
            TallyChange(
                state,
                connection_id,
                kind,
                team_id,
                jobs=-1,
                results=-1 if pk in sizes else 0,
                result_bytes=-sizes.get(pk, 0),
            )
            for pk, state, connection_id, kind, team_id in rows
        )
    for pk, _, _, _, team_id in rows:
        report.add(team_id, jobs=1)
        if pk in sizes:
            report.add(team_id, results=1, result_bytes=sizes[pk])
    return len(rows)


def _batches(step, rule: Rule, now: datetime, report: PurgeReport, deadline: float) -> Iterator[int]:
    while time.monotonic() < deadline:
        removed = step(rule, now, report)
        if not removed:
            return
        report.batches += 1
        yield removed
        if settings.RETENTION_PURGE_PAUSE:
            time.sleep(settings.RETENTION_PURGE_PAUSE)


def purge(*, now: datetime | None = None, max_seconds: float | None = None) -> PurgeReport:
    """Apply every team's retention: first result bodies, then job rows, batch by batch.

    1. Group the teams by their retention (rules()).
    2. For each group: lock a batch of its unpinned jobs whose result is older than its result days, delete
       their chunks and results, mark the jobs `result_purged_at`, take them from the tally; commit; repeat.
    3. Likewise for job rows older than its job days: delete them (transitions, results and chunks follow).
    4. Then the purge hooks: rows of other apps with a retention of their own (notifications).
    Stops after `max_seconds` (the next run carries on); logs and counts what it removed.
    """
    now = now or timezone.now()
    deadline = time.monotonic() + (max_seconds if max_seconds is not None else float("inf"))
    report = PurgeReport()
    for rule in rules():
        if rule.result_days:
            for _ in _batches(_purge_results_batch, rule, now, report, deadline):
                pass
        if rule.job_days:
            for _ in _batches(_purge_jobs_batch, rule, now, report, deadline):
                pass
    # Rows of other apps with a retention of their own (delivered notifications), in bounded batches too.
    hooks.purge_hooks_run(now=now, deadline=deadline)
    for what, amount in report.as_dict().items():
        recorder.inc("omlpy_purged_total", amount, what=what)
    if report.results or report.jobs:
        logger.info(
            "retention purge removed %s result bodies (%s bytes) and %s jobs in %s batches",
            report.results,
            report.result_bytes,
            report.jobs,
            report.batches,
            extra={"purged": report.as_dict()},
        )
    return report
