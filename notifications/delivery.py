"""Delivering the outbox: at least once, with exponential backoff, never inside a job's transaction.

A delivery is claimed like a poll: the row is locked (skipping rows another worker holds), its next attempt is
pushed forward by a lease and its attempt counted, and that is committed before anything is sent. A worker that
dies while sending leaves the row due again when the lease ends, so nothing is lost; the receiver may then see a
notification twice, with the same idempotency key.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from metrics import recorder

from .channels import SENDERS, DeliveryError
from .models import Channel, Event, Notification, NotificationRule

logger = logging.getLogger(__name__)
S = Notification.State
DUE_BATCH = 200


def retry_delay(attempts: int) -> float:
    """Seconds before the attempt after `attempts` failed ones: base x 2^(attempts-1), capped."""
    return min(settings.NOTIFY_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), settings.NOTIFY_RETRY_MAX_SECONDS)


def _claim(notification_id: int) -> Notification | None:
    now = timezone.now()
    with transaction.atomic():
        # Only the notification's row is locked: its rule's other notifications are delivered meanwhile.
        row = (
            Notification.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk=notification_id, state=S.PENDING, next_attempt_at__lte=now)
            .select_related("rule")
            .first()
        )
        if row is None:
            return None
        row.attempts += 1
        row.next_attempt_at = now + timedelta(seconds=settings.NOTIFY_LEASE_SECONDS)
        Notification.objects.filter(pk=row.pk).update(attempts=row.attempts, next_attempt_at=row.next_attempt_at)
    return row


def notification_deliver(*, notification_id: int) -> str | None:
    """One attempt at a due notification: "delivered", "retry", "failed" (gave up), or None when it is not due
    or another worker holds it.

    1. Claim it (lock, lease, count the attempt; commit).
    2. Send it through its rule's channel, outside any transaction, within NOTIFY_TIMEOUT_SECONDS.
    3. Record the outcome only if the row is still this attempt's (a lease that ran out may have let another
       worker take it).
    """
    row = _claim(notification_id)
    if row is None:
        return None
    sender = SENDERS.get(row.channel)
    error = ""
    try:
        if sender is None:
            raise DeliveryError(f"Unknown channel {row.channel!r}.")
        sender(row, row.rule)
    except DeliveryError as exc:
        error = str(exc)
    except Exception as exc:  # a library's surprise is a failed attempt, never a lost notification
        logger.exception("notification %s: delivery failed unexpectedly", row.pk)
        error = f"Unexpected error: {exc.__class__.__name__}."
    now = timezone.now()
    mine = Notification.objects.filter(pk=row.pk, state=S.PENDING, attempts=row.attempts)
    if not error:
        mine.update(state=S.DELIVERED, delivered_at=now, last_error="", next_attempt_at=None)
        outcome = "delivered"
    elif row.attempts >= settings.NOTIFY_MAX_ATTEMPTS:
        mine.update(state=S.FAILED, last_error=error[:500], next_attempt_at=None)
        outcome = "failed"
        logger.warning("notification %s: gave up after %s attempts: %s", row.pk, row.attempts, error)
    else:
        mine.update(last_error=error[:500], next_attempt_at=now + timedelta(seconds=retry_delay(row.attempts)))
        outcome = "retry"
    recorder.inc("omlpy_notifications_total", channel=row.channel, outcome=outcome)
    return outcome


def due_notification_ids(limit: int = DUE_BATCH) -> list[int]:
    """Pending notifications whose attempt is due, oldest first (the partial index notification_due_idx)."""
    return list(
        Notification.objects.filter(state=S.PENDING, next_attempt_at__lte=timezone.now())
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


def digests_send() -> int:
    """One digest for each rule whose oldest held notification is NOTIFY_DIGEST_WINDOW old; returns how many.

    1. Find the rules with held rows old enough (notification_held_idx).
    2. For each, in one transaction: lock its held rows, write the digest (a notification like any other, with
       its own key), and mark the rows as sent in it.
    """

    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.NOTIFY_DIGEST_WINDOW)
    ready = (
        Notification.objects.filter(state=S.HELD)
        .values("rule_id")
        .annotate(oldest=Min("created_at"))
        .filter(oldest__lte=cutoff)
        .values_list("rule_id", flat=True)
    )
    sent = 0
    for rule_id in list(ready):
        with transaction.atomic():
            rule = NotificationRule.objects.filter(pk=rule_id).first()
            held = list(
                Notification.objects.select_for_update(skip_locked=True)
                .filter(rule_id=rule_id, state=S.HELD)
                .order_by("created_at", "pk")
            )
            if rule is None or not held:
                continue
            lines = [f"{item.created_at:%Y-%m-%d %H:%M:%S} UTC  {item.subject}" for item in held]
            digest = Notification(
                rule=rule,
                channel=rule.channel,
                event=Event.DIGEST,
                subject=f"{len(held)} notifications of rule {rule}",
                message="This rule fired often, so its notifications are collected here:\n" + "\n".join(lines),
                payload={
                    "notifications": [{"id": str(item.key), "event": item.event, **item.payload} for item in held]
                },
            )
            # Its key names the first row it carries, so that a repeated pass cannot send a second digest of it.
            written = _write_digest(rule, digest, first=held[0], now=now)
            if written is not None:
                Notification.objects.filter(pk__in=[item.pk for item in held]).update(state=S.DIGESTED, digest=written)
                sent += 1
    return sent


def _write_digest(rule, digest: Notification, *, first: Notification, now) -> Notification | None:
    # A digest is never held itself: it is written directly, pending (or delivered, in the app).
    from . import tasks
    from .outbox import notification_key

    inapp = rule.channel == Channel.INAPP
    digest.recipient_id = rule.owner_id
    digest.key = notification_key(rule.pk, f"digest:{first.key}")
    digest.created_at = now
    digest.state = S.DELIVERED if inapp else S.PENDING
    digest.delivered_at = now if inapp else None
    digest.next_attempt_at = None if inapp else now
    if Notification.objects.filter(key=digest.key).exists():
        return None
    digest.save()
    if not inapp:
        transaction.on_commit(lambda: tasks.deliver_notification.delay(digest.pk), robust=True)
    return digest
