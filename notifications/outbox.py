"""The outbox: Notification rows written in the transaction of what causes them.

`notifications_for_transition` runs inside every job transition (jobs.services.hooks). It costs nothing for a move that
is no event (most moves), and one indexed query of the job's owner's and team's rules for a job's last move.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.urls import reverse

from accounts.models import Membership
from jobs.models import Job
from metrics import recorder

from .models import TRANSITION_EVENTS, Channel, Event, Notification, NotificationRule

KEY_NAMESPACE = uuid.UUID("6f0d2c1e-6a53-4c7e-9a5e-2f9d6a3b8e41")


def notification_key(rule_id: int, what: str) -> uuid.UUID:
    """The stable idempotency key of `what` (e.g. "job:<uuid>:failed") for a rule: the same every retry."""
    return uuid.uuid5(KEY_NAMESPACE, f"{rule_id}:{what}")


def rules_for_job(*, owner_id: int, team_id: int | None) -> list[NotificationRule]:
    """The enabled rules watching a job of `owner_id` in `team_id`: the owner's own, and the team rules of the
    team's leads (and of admins). One query, on the two partial indexes of NotificationRule."""
    leads = Membership.objects.filter(team_id=OuterRef("team_id"), user_id=OuterRef("owner_id"), role="lead")
    condition = Q(scope="mine", owner_id=owner_id)
    if team_id is not None:
        condition |= Q(scope="team", team_id=team_id) & (Exists(leads) | Q(owner__is_staff=True))
    return list(NotificationRule.objects.filter(condition, enabled=True))


def rule_matches(rule: NotificationRule, *, connection_id: int, script_name: str, kind: str) -> bool:
    return (
        (not rule.script or rule.script == script_name)
        and (rule.connection_id is None or rule.connection_id == connection_id)
        and (not rule.kind or rule.kind == kind)
    )


def job_payload(job: Job) -> dict:
    """The `job` object webhooks and emails carry."""
    return {
        "uuid": str(job.uuid),
        "state": job.state,
        "kind": job.kind,
        "script": job.script_name,
        "script_owner": job.script_owner,
        "connection": job.connection.name,
        "owner": job.owner.get_username(),
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "submitted_at": job.submitted_at.isoformat() if job.submitted_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "error": job.last_error,
        "url": settings.SITE_URL + reverse("jobs:detail", kwargs={"job_uuid": job.uuid}),
    }


def notifications_for_transition(*, job_id: int, job: dict, from_state: str, to_state: str, at: datetime) -> None:
    """Called inside job_transition's transaction: a row for each rule the job's last move concerns."""
    if to_state not in TRANSITION_EVENTS:
        return
    rules = [
        rule
        for rule in rules_for_job(owner_id=job["owner_id"], team_id=job["team_id"])
        if rule.wants(to_state)
        and rule_matches(rule, connection_id=job["connection_id"], script_name=job["script_name"], kind=job["kind"])
    ]
    if not rules:
        return
    moved = Job.objects.select_related("owner", "connection").get(pk=job_id)
    payload = {"job": job_payload(moved)}
    label = Event(to_state).label.lower()
    subject = f"Job {moved.script_name} {label}"
    lines = [f"Job {moved.uuid} ({moved.script_name} on {moved.connection.name}, by {moved.owner}) {label}."]
    if moved.last_error:
        lines.append(f"Error: {moved.last_error}")
    lines.append(payload["job"]["url"])
    for rule in rules:
        notification_enqueue(
            rule=rule,
            event=to_state,
            what=f"job:{moved.uuid}:{to_state}",
            subject=subject,
            message="\n".join(lines),
            payload=payload,
            job=moved,
            at=at,
        )


def notification_enqueue(
    *,
    rule: NotificationRule,
    event: str,
    what: str,
    subject: str,
    message: str,
    payload: dict,
    at: datetime,
    job: Job | None = None,
    connection_id: int | None = None,
) -> Notification | None:
    """Write one notification of `rule` about `what`, once: None when it exists already (the key is unique).

    In-app notifications are delivered by being written. A rule that fired NOTIFY_DIGEST_AFTER times within
    NOTIFY_DIGEST_WINDOW holds the row for its digest. Anything else is sent to a worker once committed.
    """
    from . import tasks

    key = notification_key(rule.pk, what)
    window_start = at - timedelta(seconds=settings.NOTIFY_DIGEST_WINDOW)
    recent = Notification.objects.filter(rule_id=rule.pk, created_at__gte=window_start).exclude(event=Event.DIGEST)
    held = recent[: settings.NOTIFY_DIGEST_AFTER].count() >= settings.NOTIFY_DIGEST_AFTER
    inapp = rule.channel == Channel.INAPP
    if held:
        state = Notification.State.HELD
    elif inapp:
        state = Notification.State.DELIVERED
    else:
        state = Notification.State.PENDING
    try:
        # A savepoint: a duplicate (two sweeps, a repeated pass) must not break the caller's transaction.
        with transaction.atomic():
            notification = Notification.objects.create(
                rule=rule,
                recipient_id=rule.owner_id,
                channel=rule.channel,
                event=event,
                job=job,
                job_uuid=job.uuid if job is not None else None,
                connection_id=connection_id,
                key=key,
                subject=subject[:300],
                message=message,
                payload=payload,
                state=state,
                next_attempt_at=at if state == Notification.State.PENDING else None,
                created_at=at,
                delivered_at=at if state == Notification.State.DELIVERED else None,
            )
    except IntegrityError:
        return None
    if state == Notification.State.PENDING:
        transaction.on_commit(lambda: tasks.deliver_notification.delay(notification.pk), robust=True)
    elif state == Notification.State.DELIVERED:
        transaction.on_commit(lambda: recorder.inc("omlpy_notifications_total", channel="inapp", outcome="delivered"))
    return notification
