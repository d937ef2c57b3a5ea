"""Celery tasks. Each takes ids, re-reads the rows, and calls into jobs.worker.lifecycle; the database row is the
truth."""

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

from jobs.worker import lifecycle
from metrics import recorder
from omlpy_dashboard import health


@shared_task(name="jobs.tasks.heartbeat")
def heartbeat(token: str) -> None:
    """Leave a mark in the shared cache: proof that a worker consumed a message from the broker."""
    cache.set(f"worker-heartbeat:{token}", timezone.now().isoformat(), timeout=3600)


@shared_task(name="jobs.tasks.submit_job")
def submit_job(job_id: int) -> None:
    lifecycle.submit(job_id)


@shared_task(name="jobs.tasks.poll_sweep")
def poll_sweep() -> int:
    swept = lifecycle.sweep()
    # Workers' and beat's probes, /healthz and /metrics read how long ago a sweep last ran to its end.
    health.sweep_completed()
    recorder.inc("omlpy_sweeps_total")
    return swept


@shared_task(name="jobs.tasks.fetch_result")
def fetch_result(job_id: int) -> None:
    lifecycle.fetch(job_id)


@shared_task(name="jobs.tasks.cancel_job")
def cancel_job(job_id: int, actor: str) -> None:
    lifecycle.cancel(job_id, actor=actor)


@shared_task(name="jobs.tasks.janitor")
def janitor() -> dict:
    return lifecycle.janitor()


@shared_task(name="jobs.tasks.retention_purge")
def retention_purge() -> dict:
    from django.conf import settings

    from jobs.services import retention

    # Well inside the task's time limit: what is left is removed by the next run.
    return retention.purge(max_seconds=settings.CELERY_TASK_SOFT_TIME_LIMIT / 2).as_dict()
