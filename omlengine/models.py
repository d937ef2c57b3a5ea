"""The embedded engine's own tables. Nothing outside omlengine/ writes them; tests and benchmarks read them.

Fields other code relies on (the project's tests and benchmarks read them through the ORM):

- `EngineJob.status_requests`: how many GET requests the job's status URL has received.
- `EngineJob.finished_at`: when the job finished (for timer jobs: their due time); null while it runs.
- `EngineCall`: one row per execution POST the engine accepted (sync or async); `EngineCall.job` is set when
  the POST created an async job, so `EngineCall.objects.filter(job__isnull=False).count()` counts the POSTs
  that created jobs. A POST answered with an injected fault or a 4xx leaves no row.
"""

import uuid

from django.db import models
from django.db.models import Q


class EngineUser(models.Model):
    """An OML user of the engine. The password is stored hashed with Django's password hashers."""

    username = models.CharField(max_length=128, unique=True)
    password = models.CharField(max_length=256)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.username


class EngineScript(models.Model):
    """A named Python function in the script repository. Requests name scripts; no code travels in a request.

    A global script is visible to every user; a private one only to its owner.
    """

    name = models.CharField(max_length=128)
    owner = models.CharField(max_length=128)
    description = models.TextField(blank=True)
    is_global = models.BooleanField(default=False)
    source = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "owner"]
        constraints = [models.UniqueConstraint(fields=["name", "owner"], name="omlengine_script_name_owner")]

    def __str__(self) -> str:
        return f"{self.owner}.{self.name}"


class EngineJob(models.Model):
    """An async execution: queued by a POST with asyncFlag, run by `omlengine_worker`, kept until retention ends.

    A timer job (`is_timer`) never reaches a worker: it is created running with `due_at`, and the status and
    result requests complete it once that moment has passed.
    """

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        DELETED = "deleted"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.CharField(max_length=128)
    api_version = models.CharField(max_length=2)
    kind = models.CharField(max_length=16)
    script_name = models.CharField(max_length=128)
    script_owner = models.CharField(max_length=128)
    request = models.JSONField(help_text="The validated execution request (see omlengine.protocol.Execution).")
    service = models.CharField(max_length=16)
    timeout = models.PositiveIntegerField()
    is_timer = models.BooleanField(default=False)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the worker running the job.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    result = models.TextField(blank=True, help_text="JSON text of the result, without the {'result':} wrapper.")
    error_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.PositiveIntegerField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    status_requests = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [
            # The worker's claim: the oldest queued jobs.
            models.Index(fields=["created_at"], condition=Q(state="queued"), name="omlengine_job_queued"),
            # The worker's stale-run check: running non-timer jobs by heartbeat.
            models.Index(
                fields=["heartbeat_at"], condition=Q(state="running", is_timer=False), name="omlengine_job_running"
            ),
            # The retention sweep: finished jobs by age.
            models.Index(fields=["finished_at"], name="omlengine_job_finished"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["queued", "running", "succeeded", "failed", "deleted"]),
                name="omlengine_job_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}/{self.script_name} {self.id}"


class EngineCall(models.Model):
    """One accepted execution POST, sync or async; `job` is the async job it created, if any."""

    owner = models.CharField(max_length=128)
    api_version = models.CharField(max_length=2)
    kind = models.CharField(max_length=16)
    script_name = models.CharField(max_length=128)
    async_flag = models.BooleanField()
    job = models.ForeignKey(EngineJob, on_delete=models.SET_NULL, null=True, blank=True, related_name="calls")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.kind}/{self.script_name} at {self.created_at:%Y-%m-%d %H:%M:%S}"
