"""Celery tasks of notifications: thin, taking ids."""

from celery import shared_task

from . import delivery


@shared_task(name="notifications.tasks.deliver_notification")
def deliver_notification(notification_id: int) -> str | None:
    return delivery.notification_deliver(notification_id=notification_id)


@shared_task(name="notifications.tasks.deliver_due")
def deliver_due() -> int:
    """Digests that are due, then every delivery whose attempt is due (retries, and messages the broker lost)."""
    delivery.digests_send()
    due = delivery.due_notification_ids()
    for notification_id in due:
        deliver_notification.delay(notification_id)
    return len(due)
