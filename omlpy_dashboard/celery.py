"""The Celery application: configured from Django settings (CELERY_*), tasks found in the apps."""

import os
from datetime import timedelta

from celery import Celery

from .broker import install as install_transports
from .broker import is_file_broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omlpy_dashboard.settings")
install_transports()

app = Celery("omlpy_dashboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _prepare(sender: Celery, **kwargs) -> None:
    from django.conf import settings

    # The filesystem transport expects its folders to exist.
    if is_file_broker(settings.CELERY_BROKER_URL):
        for key in ("data_folder_in", "processed_folder", "control_folder"):
            os.makedirs(settings.CELERY_BROKER_TRANSPORT_OPTIONS[key], exist_ok=True)
    sender.conf.beat_schedule = {
        "poll-sweep": {
            "task": "jobs.tasks.poll_sweep",
            "schedule": timedelta(seconds=settings.JOBS_SWEEP_INTERVAL),
            # A sweep that waited longer than its interval is superseded by the next one.
            "options": {"expires": max(settings.JOBS_SWEEP_INTERVAL * 2, 2)},
        },
        "janitor": {
            "task": "jobs.tasks.janitor",
            "schedule": timedelta(seconds=settings.JOBS_JANITOR_INTERVAL),
            "options": {"expires": settings.JOBS_JANITOR_INTERVAL * 2},
        },
        # A signed checkpoint of the audit chain's head, outside the database (audit.checkpoints).
        "audit-checkpoint": {
            "task": "audit.tasks.audit_checkpoint",
            "schedule": timedelta(seconds=settings.AUDIT_CHECKPOINT_INTERVAL),
            "options": {"expires": max(settings.AUDIT_CHECKPOINT_INTERVAL, 1)},
        },
        "retention-purge": {
            "task": "jobs.tasks.retention_purge",
            "schedule": timedelta(seconds=settings.RETENTION_PURGE_INTERVAL),
            "options": {"expires": settings.RETENTION_PURGE_INTERVAL},
        },
    }
