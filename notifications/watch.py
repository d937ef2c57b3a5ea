"""What only the sweep can see: jobs running longer than their history says (`slow`), jobs whose status
requests OML has not answered for a while (`stuck`), and connections whose requests keep failing
(`connection_down`, with a recovery notice). Each is notified once: per job and rule, or per connection,
episode and rule (the notification's key says so)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from accounts.models import Membership
from jobs.models import Connection, Job
from jobs.states import JobState

from .models import ConnectionEpisode, Event, NotificationRule
from .outbox import job_payload, notification_enqueue, rule_matches

WATCH_LOCK = "notifications-watch"
STUCK_SINCE = "notifications-stuck-since:{}"
# The one-sided 95th percentile of a normal variable: the learned durations are lognormal (jobs.worker.polling).
P95_Z = 1.645


def notifications_watch(now: datetime | None = None, *, force: bool = False) -> None:
    """At most once per NOTIFY_CHECK_INTERVAL across all workers (a cache lock), from the sweep.

    1. Rules with `slow` or `stuck`: their pending jobs (one query), checked against each rule's limits.
    2. Connections: open an episode when all their polled pending jobs fail; notify it once it has lasted
       NOTIFY_CONNECTION_DOWN_AFTER; close it (with a recovery notice if one was sent) when they answer again.
    """
    if not force and not cache.add(WATCH_LOCK, 1, timeout=settings.NOTIFY_CHECK_INTERVAL):
        return
    now = now or timezone.now()
    rules = list(
        NotificationRule.objects.filter(enabled=True).filter(
            Q(events__icontains=Event.SLOW) | Q(events__icontains=Event.STUCK)
        )
    )
    rules = [rule for rule in rules if rule.wants(Event.SLOW) or rule.wants(Event.STUCK)]
    if rules:
        _slow_and_stuck(rules, now)
    _connections(now)


def expected_p95(job: Job) -> float | None:
    """Seconds within which 95 % of this script's past runs on this connection finished; None without history."""
    if not job.expected_seconds:
        return None
    return job.expected_seconds * math.exp(P95_Z * (job.expected_spread or 0.0))


def _minutes(seconds: float) -> str:
    """A duration as people say it: seconds under two minutes, whole minutes above."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _lead_rule_ok(rule: NotificationRule, leads: set[tuple[int, int]]) -> bool:
    return rule.scope == "mine" or rule.owner.is_staff or (rule.owner_id, rule.team_id) in leads


def _slow_and_stuck(rules: list[NotificationRule], now: datetime) -> None:
    owners = {rule.owner_id for rule in rules if rule.scope == "mine"}
    teams = {rule.team_id for rule in rules if rule.scope == "team"}
    leads = set(Membership.objects.filter(team_id__in=teams, role="lead").values_list("user_id", "team_id"))
    jobs = list(
        Job.objects.filter(state=JobState.PENDING)
        .filter(Q(owner_id__in=owners) | Q(team_id__in=teams))
        .select_related("owner", "connection")
    )
    # How long each failing job has failed: the first pass that saw it failing, kept in the shared cache (by uuid:
    # ids may be reused by a new database). A job answered again starts afresh.
    failing = {job.pk for job in jobs if job.last_error}
    keys = {job.pk: STUCK_SINCE.format(job.uuid) for job in jobs}
    since = cache.get_many([keys[pk] for pk in failing]) if failing else {}
    fresh = {keys[pk]: now.timestamp() for pk in failing if keys[pk] not in since}
    if fresh:
        cache.set_many(fresh, timeout=7 * 24 * 3600)
    since.update(fresh)
    answered = [keys[job.pk] for job in jobs if not job.last_error]
    if answered:
        cache.delete_many(answered)
    for rule in rules:
        if not _lead_rule_ok(rule, leads):
            continue
        for job in jobs:
            mine = rule.scope == "mine" and job.owner_id == rule.owner_id
            if not (mine or (rule.scope == "team" and job.team_id == rule.team_id)):
                continue
            if not rule_matches(rule, connection_id=job.connection_id, script_name=job.script_name, kind=job.kind):
                continue
            started = job.oml_accepted_at or job.submitted_at or job.created_at
            age = (now - started).total_seconds()
            if rule.wants(Event.SLOW):
                _maybe_slow(rule, job, age, now)
            if rule.wants(Event.STUCK) and job.pk in failing:
                failing_for = now.timestamp() - float(since[keys[job.pk]])
                if failing_for >= rule.stuck_minutes * 60:
                    _notify_job(
                        rule,
                        job,
                        Event.STUCK,
                        f"Job {job.script_name} stuck: OML has not answered for {_minutes(failing_for)}",
                        f"OML has not answered the status requests of job {job.uuid} ({job.script_name} on "
                        f"{job.connection.name}) for {_minutes(failing_for)}; the last error: {job.last_error}",
                        {"unanswered_seconds": round(failing_for, 1)},
                        now,
                    )


def _maybe_slow(rule: NotificationRule, job: Job, age: float, now: datetime) -> None:
    p95 = expected_p95(job)
    if p95 is not None:
        limit = p95 * rule.factor
        usual = (
            f"this script usually finishes within {_minutes(p95)} on this connection"
            f" (the rule allows {rule.factor:g}x that)"
        )
    else:
        limit = rule.minutes * 60
        usual = f"this script has no history yet; the rule's limit is {_minutes(limit)}"
    if age < limit:
        return
    _notify_job(
        rule,
        job,
        Event.SLOW,
        f"Job {job.script_name} slow: running {_minutes(age)}",
        f"Job {job.uuid} ({job.script_name} on {job.connection.name}) has been running {_minutes(age)}; {usual}.",
        {"running_seconds": round(age, 1), "expected_p95_seconds": round(p95, 1) if p95 else None},
        now,
    )


def _notify_job(rule, job: Job, event: str, subject: str, message: str, extra: dict, now: datetime) -> None:
    payload = {"job": job_payload(job), **extra}
    with transaction.atomic():
        notification_enqueue(
            rule=rule,
            event=event,
            what=f"job:{job.uuid}:{event}",
            subject=subject,
            message=f"{message}\n{payload['job']['url']}",
            payload=payload,
            job=job,
            at=now,
        )


def _connections(now: datetime) -> None:
    """Episodes of connections whose every polled pending job fails (token or status requests)."""
    polled = (
        Job.objects.filter(state=JobState.PENDING, last_polled_at__isnull=False)
        .values("connection_id")
        .annotate(total=Count("id"), failing=Count("id", filter=~Q(last_error="")))
        .order_by()
    )
    down = {row["connection_id"] for row in polled if row["total"] and row["failing"] == row["total"]}
    answering = {row["connection_id"] for row in polled if row["failing"] < row["total"]}
    open_episodes = {episode.connection_id: episode for episode in ConnectionEpisode.objects.filter(ended_at=None)}
    for connection_id in down - set(open_episodes):
        try:
            with transaction.atomic():
                ConnectionEpisode.objects.create(connection_id=connection_id, started_at=now)
        except IntegrityError:
            pass  # another pass opened it
    after = timedelta(seconds=settings.NOTIFY_CONNECTION_DOWN_AFTER)
    for connection_id, episode in open_episodes.items():
        if connection_id in down and episode.notified_at is None and now - episode.started_at >= after:
            _episode_notify(episode, now, recovered=False)
            ConnectionEpisode.objects.filter(pk=episode.pk).update(notified_at=now)
        elif connection_id in answering or connection_id not in down:
            if episode.notified_at is not None:
                _episode_notify(episode, now, recovered=True)
            ConnectionEpisode.objects.filter(pk=episode.pk).update(ended_at=now)


def _episode_notify(episode: ConnectionEpisode, now: datetime, *, recovered: bool) -> None:
    connection = Connection.objects.filter(pk=episode.connection_id).first()
    if connection is None:
        return
    rules = NotificationRule.objects.filter(enabled=True, events__icontains=Event.CONNECTION_DOWN).select_related(
        "owner"
    )
    for rule in rules:
        if not rule.wants(Event.CONNECTION_DOWN) or rule.connection_id not in (None, connection.pk):
            continue
        if not _may_see_connection(rule, connection.pk):
            continue
        lasted = _minutes((now - episode.started_at).total_seconds())
        if recovered:
            subject = f"Connection {connection.name} recovered"
            message = f"OML at connection {connection.name} answers again, after {lasted} of failures."
        else:
            subject = f"Connection {connection.name} down"
            message = (
                f"The token or status requests to connection {connection.name} have failed for {lasted}: "
                "jobs on it are not being followed until it answers again."
            )
        with transaction.atomic():
            notification_enqueue(
                rule=rule,
                event=Event.CONNECTION_DOWN,
                what=f"connection:{connection.pk}:{episode.pk}:{'up' if recovered else 'down'}",
                subject=subject,
                message=message,
                payload={
                    "connection": connection.name,
                    "recovered": recovered,
                    "since": episode.started_at.isoformat(),
                },
                connection_id=connection.pk,
                at=now,
            )


def _may_see_connection(rule: NotificationRule, connection_id: int) -> bool:
    from jobs.selectors import access

    return access.may_see_connection(rule.owner, connection_id)
