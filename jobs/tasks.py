"""Celery tasks. Each takes ids, re-reads the rows, and calls a service; the database row is the truth."""

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone


@shared_task(name="jobs.tasks.heartbeat")
def heartbeat(token: str) -> None:
    """Leave a mark in the shared cache: proof that a worker consumed a message from the broker."""
    cache.set(f"worker-heartbeat:{token}", timezone.now().isoformat(), timeout=3600)
