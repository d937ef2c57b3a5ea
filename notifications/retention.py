"""Retention of notifications: delivered, failed and digested ones (and in-app ones, read or not) older than
NOTIFY_KEEP_DAYS are removed by the scheduled purge (jobs.services.retention via jobs.services.hooks), in bounded
batches. Pending and held ones are kept whatever their age: they are not delivered yet."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from .models import Notification

logger = logging.getLogger(__name__)
DONE_STATES = (Notification.State.DELIVERED, Notification.State.FAILED, Notification.State.DIGESTED)


def notifications_purge(*, now: datetime, deadline: float) -> int:
    """Remove old finished notifications, RETENTION_PURGE_BATCH at a time, until none is left or the deadline.

    1. Select a batch of ids of finished notifications older than the cutoff (notification_created_idx).
    2. Delete them in one short transaction (digests first lose their link: SET_NULL); pause; repeat.
    """
    if not settings.NOTIFY_KEEP_DAYS:
        return 0
    cutoff = now - timedelta(days=settings.NOTIFY_KEEP_DAYS)
    removed = 0
    while time.monotonic() < deadline:
        with transaction.atomic():
            ids = list(
                Notification.objects.filter(created_at__lt=cutoff, state__in=DONE_STATES)
                .order_by("created_at")
                .values_list("pk", flat=True)[: settings.RETENTION_PURGE_BATCH]
            )
            if not ids:
                break
            Notification.objects.filter(digest_id__in=ids).update(digest=None)
            removed += Notification.objects.filter(pk__in=ids).delete()[0]
        time.sleep(settings.RETENTION_PURGE_PAUSE)
    if removed:
        logger.info("retention purge removed %s notifications older than %s days", removed, settings.NOTIFY_KEEP_DAYS)
    return removed
