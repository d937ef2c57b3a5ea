import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from .models_storage import JobPin, JobRollup, JobTally, RetentionPolicy, ScriptStats, TeamRollup
from .states import ACTIVE_STATES, TERMINAL_STATES, JobKind, JobState, ServiceLevel

if TYPE_CHECKING:
    from .oml.client import ConnectionInfo

__all__ = [
    "Connection",
    "IdempotencyKey",
    "Job",
    "JobKind",
    "JobPin",
    "JobResult",
    "JobResultChunk",
    "JobResultRendition",
    "JobResultRenditionChunk",
    "JobRollup",
    "JobState",
    "JobTally",
    "JobTransition",
    "RetentionPolicy",
    "ScriptStats",
    "TeamRollup",
]


class Connection(models.Model):
    """An OML4Py REST service the dashboard submits to. The password is stored encrypted only."""

    class ApiVersion(models.TextChoices):
        V2 = "v2", "v2"
        V1 = "v1", "v1 (retired by Oracle on 2026-03-31)"

    name = models.CharField(max_length=100, unique=True)
    base_url = models.URLField(
        max_length=500, help_text="e.g. https://<tenancy>-<database>.adb.<region>.oraclecloudapps.com"
    )
    api_version = models.CharField(max_length=2, choices=ApiVersion.choices, default=ApiVersion.V2)
    username = models.CharField("OML username", max_length=128)
    password_encrypted = models.TextField(editable=False)
    poll_budget = models.PositiveIntegerField(
        default=20, help_text="Most status requests per second the workers send to this server."
    )

    class PollStrategy(models.TextChoices):
        DEFAULT = "", "Default (the JOBS_POLL_STRATEGY setting)"
        LEARNED = "learned", "Learned from each script's past durations"
        BACKOFF = "backoff", "Backoff (x1.5 up to the cap)"
        FIXED = "fixed", "Fixed interval"

    poll_strategy = models.CharField(max_length=10, choices=PollStrategy.choices, default="", blank=True)
    is_default = models.BooleanField(default=False)
    teams = models.ManyToManyField(
        "accounts.Team",
        blank=True,
        related_name="connections",
        help_text="The teams whose members may see and use this connection. Administrators may use every one.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="one_default_connection"),
            models.CheckConstraint(condition=Q(poll_budget__gte=1), name="connection_poll_budget_positive"),
        ]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def default(cls) -> "Connection | None":
        """The default connection, or None."""
        # One at most (one_default_connection): no ordering is needed.
        return next(iter(cls.objects.filter(is_default=True).order_by()[:1]), None)

    def set_password(self, plain: str) -> None:
        from .crypto import encrypt

        self.password_encrypted = encrypt(plain)

    def get_password(self) -> str:
        from .crypto import decrypt

        return decrypt(self.password_encrypted)

    def oml_connection(self) -> "ConnectionInfo":
        """What the OML client is given of this connection: plain values, the deployment's timeouts with them.
        The token's key changes when the connection is saved, so that new credentials get a new token."""
        from .oml.client import ConnectionInfo

        # The sweep asks for every poll: the password is decrypted once per saved version of the connection.
        timeouts = (settings.OML_CONNECT_TIMEOUT, settings.OML_READ_TIMEOUT, settings.OML_GET_RETRIES)
        known = (self.pk, self.updated_at, self.base_url, self.api_version, self.username, self.password_encrypted)
        info = _OML_CONNECTIONS.get(known + timeouts)
        if info is None:
            info = ConnectionInfo(
                key=f"{self.pk}:{self.updated_at.timestamp() if self.updated_at else 0}",
                base_url=self.base_url,
                api_version=self.api_version,
                username=self.username,
                password=self.get_password(),
                connect_timeout=timeouts[0],
                read_timeout=timeouts[1],
                get_retries=timeouts[2],
            )
            if len(_OML_CONNECTIONS) > 256:
                _OML_CONNECTIONS.clear()
            _OML_CONNECTIONS[known + timeouts] = info
        return info


# Connection.oml_connection's answers in this process, by the stored values they come from.
_OML_CONNECTIONS: dict[tuple, "ConnectionInfo"] = {}

_ACTIVE = Q(state__in=sorted(ACTIVE_STATES))


class Job(models.Model):
    """One Embedded Python Execution call, from the moment it is asked for until it ends."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="jobs")
    team = models.ForeignKey("accounts.Team", on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs")
    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="jobs")
    parent = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="children",
        help_text="The job this one re-runs or was cloned from.",
    )

    # What to call.
    kind = models.CharField(max_length=16, choices=JobKind.choices)
    script_name = models.CharField(max_length=128)
    script_owner = models.CharField(max_length=128, blank=True)
    # The OML request body fields (OML_API.md), one column each.
    input_sql = models.TextField(blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    rows = models.PositiveIntegerField(null=True, blank=True)
    group_by = models.CharField(max_length=500, blank=True)
    order_by = models.CharField(max_length=500, blank=True)
    times = models.PositiveIntegerField(null=True, blank=True)
    parallel_flag = models.BooleanField(null=True, blank=True)
    parallel = models.PositiveSmallIntegerField(null=True, blank=True)
    service = models.CharField(max_length=10, choices=ServiceLevel.choices, blank=True)
    async_flag = models.BooleanField(default=True)
    timeout = models.PositiveIntegerField(null=True, blank=True)
    graphics_flag = models.BooleanField(default=False)
    env_name = models.CharField(max_length=128, blank=True)

    # Where it stands. Only jobs.services.jobs.job_transition writes `state`.
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED)
    oml_job_id = models.CharField(max_length=200, blank=True)
    oml_job_url = models.URLField(max_length=1000, blank=True)
    oml_result_url = models.URLField(max_length=1000, blank=True)
    last_error = models.TextField(blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    oml_accepted_at = models.DateTimeField(null=True, blank=True)
    oml_finished_at = models.DateTimeField(null=True, blank=True, help_text="When the dashboard saw OML's 302.")
    result_fetched_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # Polling.
    next_poll_at = models.DateTimeField(
        null=True, blank=True, help_text="Pending jobs only: when the sweep next asks OML about the job."
    )
    submit_after = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Queued jobs only: not submitted by the sweep before this (a refusal's retry time, or a sweep's "
        "claim on it).",
    )
    deadline_at = models.DateTimeField(null=True, blank=True, help_text="The janitor ends the job after this.")
    poll_count = models.PositiveIntegerField(default=0)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    oml_elapsed_seconds = models.FloatField(null=True, blank=True, help_text="elapsedTime of the last 202.")
    oml_last_running_at = models.DateTimeField(
        null=True, blank=True, help_text="When OML last answered 202 (still running): its finish came after this."
    )
    # Database defaults as well: rows written by plain SQL (bench/history.py's bulk fill) need not name them.
    poll_log = models.JSONField(
        default=dict,
        db_default={},
        blank=True,
        help_text="The first and last status requests (jobs.worker.polling) and how many were left out.",
    )
    expected_seconds = models.FloatField(
        null=True, blank=True, help_text="How long this script usually takes (median), learned from its history."
    )
    expected_spread = models.FloatField(
        null=True, blank=True, help_text="Spread of that duration: standard deviation of its logarithm."
    )

    cancel_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="Asked to cancel; a worker deletes the OML job and ends it cancelled."
    )
    result_purged_at = models.DateTimeField(
        null=True, blank=True, help_text="When retention removed the result body (the job's row stays)."
    )

    # Exactly what code ran, when the server's script list shows it.
    script_source = models.TextField(blank=True)
    script_sha256 = models.CharField(max_length=64, blank=True)
    script_date = models.CharField(
        max_length=64,
        blank=True,
        default="",
        db_default="",
        help_text="The script's date as OML listed it just before the call.",
    )
    script_date_at_finish = models.CharField(
        max_length=64,
        blank=True,
        default="",
        db_default="",
        help_text="The script's date as OML listed it when the job ended.",
    )
    script_changed = models.BooleanField(
        null=True, blank=True, help_text="The script was replaced while the job ran (None: not checked)."
    )
    # What "usually takes" and learned polling compare a run with: kind, parameters, input and connection.
    call_signature = models.CharField(max_length=64, blank=True, default="", db_default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # poll sweep: state = 'pending' AND next_poll_at <= now() ORDER BY next_poll_at LIMIT n
            models.Index(fields=["next_poll_at"], condition=Q(state=JobState.PENDING), name="job_due_idx"),
            # janitor: active jobs past deadline_at
            models.Index(fields=["deadline_at"], condition=_ACTIVE, name="job_active_deadline_idx"),
            # janitor: queued / submitting / fetching jobs by how long they have been there
            models.Index(fields=["state", "created_at"], condition=_ACTIVE, name="job_active_state_idx"),
            # /metrics: COUNT(*) of active jobs GROUP BY state, connection, kind, read from the index alone
            # (jobs.selectors.gauges; the tally counts finished ones)
            models.Index(fields=["state", "connection", "kind"], condition=_ACTIVE, name="job_active_count_idx"),
            # history: newest first, optionally by owner / state / script / team; keyset on (created_at, id)
            models.Index(fields=["-created_at", "-id"], name="job_history_idx"),
            models.Index(fields=["owner", "-created_at", "-id"], name="job_history_owner_idx"),
            models.Index(fields=["state", "-created_at", "-id"], name="job_history_state_idx"),
            models.Index(fields=["script_name", "-created_at", "-id"], name="job_history_script_idx"),
            models.Index(fields=["team", "-created_at", "-id"], name="job_history_team_idx"),
            # history, "longest first": finished jobs by duration, keyset on (finished_at - created_at, id); then
            # the jobs with no duration yet, newest first (few: the active ones)
            models.Index(
                (F("finished_at") - F("created_at")).desc(),
                F("id").desc(),
                condition=Q(finished_at__isnull=False),
                name="job_history_duration_idx",
            ),
            models.Index(
                fields=["-created_at", "-id"], condition=Q(finished_at__isnull=True), name="job_history_unfinished_idx"
            ),
            # search by OML job id
            models.Index(fields=["oml_job_id"], name="job_oml_job_id_idx"),
            # learned polling: the latest finished runs of a script on a connection
            models.Index(
                fields=["connection", "script_name", "-finished_at"],
                condition=Q(state=JobState.SUCCEEDED),
                name="job_script_runs_idx",
            ),
            # retention: finished jobs oldest first (jobs.services.retention)
            models.Index(fields=["finished_at"], condition=Q(finished_at__isnull=False), name="job_finished_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(state__in=JobState.values), name="job_state_valid"),
            models.CheckConstraint(condition=Q(kind__in=JobKind.values), name="job_kind_valid"),
            models.CheckConstraint(
                condition=~Q(state=JobState.PENDING) | Q(next_poll_at__isnull=False),
                name="job_pending_has_next_poll",
            ),
            models.CheckConstraint(
                condition=_ACTIVE | Q(finished_at__isnull=False), name="job_terminal_has_finished_at"
            ),
            models.CheckConstraint(
                condition=Q(submitted_at__isnull=True) | Q(submitted_at__gte=F("created_at")),
                name="job_submitted_after_created",
            ),
            models.CheckConstraint(
                condition=Q(finished_at__isnull=True) | Q(finished_at__gte=F("created_at")),
                name="job_finished_after_created",
            ),
            models.CheckConstraint(
                condition=~Q(kind=JobKind.ROW_APPLY) | Q(rows__gte=1), name="job_row_apply_has_rows"
            ),
            models.CheckConstraint(
                condition=~Q(kind=JobKind.INDEX_APPLY) | Q(times__gte=1), name="job_index_apply_has_times"
            ),
            models.CheckConstraint(
                condition=~Q(kind=JobKind.GROUP_APPLY) | ~Q(group_by=""), name="job_group_apply_has_group_by"
            ),
            models.CheckConstraint(
                condition=~Q(kind__in=[JobKind.TABLE_APPLY, JobKind.ROW_APPLY, JobKind.GROUP_APPLY]) | ~Q(input_sql=""),
                name="job_data_kinds_have_input",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.script_name} ({self.uuid})"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def kind_path(self) -> str:
        return JobKind(self.kind).path

    def oml_url(self) -> str:
        """The URL this job's call is POSTed to (the OML client knows OML's URLs)."""
        from .oml.client import run_url

        return run_url(
            self.connection.base_url, self.connection.api_version, self.kind_path, self.script_name, self.script_owner
        )

    def oml_body(self) -> dict:
        """The JSON body sent to OML for this job, with only the fields that were set."""
        import json

        body: dict = {}
        if self.input_sql:
            body["input"] = self.input_sql
        if self.parameters:
            body["parameters"] = json.dumps(self.parameters, separators=(",", ":"))
        for key, value in (
            ("rows", self.rows),
            ("groupBy", self.group_by),
            ("orderBy", self.order_by),
            ("times", self.times),
            ("parallelFlag", self.parallel_flag),
            ("parallel", self.parallel),
            ("service", self.service),
            ("timeout", self.timeout),
            ("envName", self.env_name),
        ):
            if value not in (None, ""):
                body[key] = value
        if self.graphics_flag:
            body["graphicsFlag"] = True
        body["asyncFlag"] = self.async_flag
        return body


class JobTransition(models.Model):
    """One state change of a job, written in the same transaction as the change."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="transitions")
    from_state = models.CharField(max_length=16, choices=JobState.choices)
    to_state = models.CharField(max_length=16, choices=JobState.choices)
    at = models.DateTimeField()
    reason = models.CharField(max_length=500)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [
            # the job page's timeline: WHERE job_id = ? ORDER BY at, id
            models.Index(fields=["job", "at", "id"], name="transition_timeline_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.from_state} -> {self.to_state}"


class JobResult(models.Model):
    """A job's result body exactly as OML sent it, stored in JobResultChunk rows."""

    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="result")
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    content_type = models.CharField(max_length=200)
    row_count = models.PositiveIntegerField(null=True, blank=True)
    shape = models.CharField(max_length=20, blank=True, help_text="records, groups, list, graphics, object, scalar")
    columns = models.JSONField(
        null=True,
        blank=True,
        help_text="The rows' column names in order of first appearance, found when the result was stored, so that "
        "a download reads the body once; null for a result stored before they were recorded, or too wide.",
    )
    chunk_count = models.PositiveIntegerField()
    stored_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(size_bytes__gte=0), name="result_size_non_negative")]
        indexes = [
            # retention: stored results oldest first (jobs.services.retention)
            models.Index(fields=["stored_at"], name="result_stored_idx"),
        ]

    def __str__(self) -> str:
        return f"Result of {self.job_id} ({self.size_bytes} bytes)"


class JobResultChunk(models.Model):
    result = models.ForeignKey(JobResult, on_delete=models.CASCADE, related_name="chunks")
    seq = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["result", "seq"], name="result_chunk_seq_unique")]

    def __str__(self) -> str:
        return f"Chunk {self.seq} of result {self.result_id}"


class JobResultRendition(models.Model):
    """A stored result written out in a download format (CSV) on its first download, kept in chunks beside the
    body so that later downloads copy it as they copy the body (jobs.results.renditions). Removed with its result."""

    result = models.ForeignKey(JobResult, on_delete=models.CASCADE, related_name="renditions")
    format = models.CharField(max_length=8)
    version = models.PositiveSmallIntegerField(
        help_text="The writer's version: a rendition of another version is written again rather than sent."
    )
    size_bytes = models.BigIntegerField(default=0)
    chunk_count = models.PositiveIntegerField(default=0)
    written_at = models.DateTimeField(help_text="When its writer claimed it or last stored a chunk.")
    completed_at = models.DateTimeField(null=True, blank=True, help_text="Null while it is being written.")

    class Meta:
        constraints = [
            # One rendition per result and format: of two first downloads at once, one writes it.
            models.UniqueConstraint(fields=["result", "format"], name="result_rendition_unique")
        ]

    def __str__(self) -> str:
        return f"{self.format} of result {self.result_id}"


class JobResultRenditionChunk(models.Model):
    rendition = models.ForeignKey(JobResultRendition, on_delete=models.CASCADE, related_name="chunks")
    seq = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rendition", "seq"], name="result_rendition_chunk_unique")]

    def __str__(self) -> str:
        return f"Chunk {self.seq} of rendition {self.rendition_id}"


class IdempotencyKey(models.Model):
    """The `Idempotency-Key` a user sent with a submission and the job it created: a repeat with the same key
    within a day answers that job instead of creating another (jobs.services.idempotency)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_sha256 = models.CharField(max_length=64, help_text="The submitted request, to refuse a reused key.")
    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            # Also the index of the one lookup: WHERE owner_id = ? AND key = ?
            models.UniqueConstraint(fields=["owner", "key"], name="idempotency_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.key} -> job {self.job_id}"
