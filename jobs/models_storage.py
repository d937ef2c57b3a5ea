"""What keeps storage bounded and operators informed: the tally of finished jobs, per-script statistics,
retention policies and pins. Imported by jobs.models, so that Django finds them in the jobs app."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q


class JobTally(models.Model):
    """Finished jobs and the bytes of their stored results, per (state, connection, kind, team).

    Finished jobs never change state again, so these counts move only when a job finishes (+1, in the
    transaction of its last transition, jobs.services.tally) and when retention removes a result or a job (-, in the
    transaction of the purge's batch). /metrics and the storage page read this small table instead of
    counting a table of millions of jobs; jobs still active are counted live (few, and indexed).

    `connection_id` and `team_key` are plain numbers (0: no team), not foreign keys: a row must outlive a
    deleted team, whose jobs then count under "no team" (jobs.services.tally merges unknown teams there).
    """

    state = models.CharField(max_length=16)
    connection_id = models.BigIntegerField()
    kind = models.CharField(max_length=16)
    team_key = models.BigIntegerField(default=0)
    jobs = models.BigIntegerField(default=0)
    results = models.BigIntegerField(default=0)
    result_bytes = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["state", "connection_id", "kind", "team_key"], name="job_tally_unique")
        ]

    def __str__(self) -> str:
        return f"{self.state} {self.kind} on {self.connection_id} (team {self.team_key}): {self.jobs}"


class ScriptStats(models.Model):
    """What learned polling knows of a script on a connection: its most recent successful durations in OML,
    over all its runs (signature "") and per call signature (the same kind, parameters, input and connection).

    Written as each job of the script succeeds, read when the next one is submitted; kept when old jobs are
    purged, so that polling stays as sparse after a purge as before it.
    """

    connection_id = models.BigIntegerField()
    script_name = models.CharField(max_length=128)
    script_owner = models.CharField(max_length=128, blank=True)
    signature = models.CharField(
        max_length=64,
        blank=True,
        default="",
        db_default="",
        help_text="A call signature (jobs.selectors.stats) of the script; empty: every run of the script.",
    )
    durations = models.JSONField(default=list, help_text="Seconds in OML of the latest runs, oldest first.")
    runs = models.BigIntegerField(default=0, help_text="Successful runs counted since statistics began.")
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            # Also the index of the one lookup: a script's row and its signature's row, by equality.
            models.UniqueConstraint(
                fields=["connection_id", "script_name", "script_owner", "signature"], name="script_stats_unique"
            )
        ]

    def __str__(self) -> str:
        signature = f" [{self.signature[:8]}]" if self.signature else ""
        return f"{self.script_name}{signature} on {self.connection_id}: {self.runs} runs"


class RetentionPolicy(models.Model):
    """How long a team's finished jobs keep their result bodies and their rows. Empty: the deployment's
    default (RETENTION_RESULT_DAYS, RETENTION_JOB_DAYS); 0: kept forever. Pinned jobs are always kept."""

    team = models.OneToOneField("accounts.Team", on_delete=models.CASCADE, related_name="retention")
    result_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Days a finished job keeps its result body. Empty: the default; 0: forever."
    )
    job_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Days a finished job's row and transitions are kept. Empty: the default; 0: forever.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "retention policies"

    def __str__(self) -> str:
        return f"Retention of {self.team}"

    def clean(self) -> None:
        result_days = settings.RETENTION_RESULT_DAYS if self.result_days is None else self.result_days
        job_days = settings.RETENTION_JOB_DAYS if self.job_days is None else self.job_days
        # A result is kept no longer than its job: removing the row removes the result with it.
        if job_days and (result_days == 0 or result_days > job_days):
            raise ValidationError(
                {"job_days": f"Job rows must be kept at least as long as results ({result_days or 'forever'} days)."}
            )


class JobPin(models.Model):
    """A hold on a job: it and its result are never purged while pinned. Pins and unpins are audited."""

    job = models.OneToOneField("jobs.Job", on_delete=models.CASCADE, related_name="pin")
    pinned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="job_pins"
    )
    pinned_by_username = models.CharField(max_length=150)
    pinned_at = models.DateTimeField()
    reason = models.CharField(max_length=500)

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(reason=""), name="job_pin_has_reason")]

    def __str__(self) -> str:
        return f"Pin of {self.job_id} by {self.pinned_by_username}"


class JobRollup(models.Model):
    """What analytics reads of finished jobs: per hour of creation (UTC), owner, team, connection, script, kind
    and final state, their number, the sums of their phases, and a histogram of their durations.

    Added to in the transaction of each job's terminal transition (jobs.services.rollups). The live part (`purged`
    false) says what the job rows say and can be rebuilt from them; when retention deletes rows, their share
    moves to the purged part in the same transaction, so that a job always counts once.
    """

    hour = models.DateTimeField(help_text="The hour (UTC) the jobs were created in.")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    team = models.ForeignKey("accounts.Team", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    connection_id = models.BigIntegerField()
    script_name = models.CharField(max_length=128)
    kind = models.CharField(max_length=16)
    state = models.CharField(max_length=16)
    jobs = models.BigIntegerField(default=0)
    queue_sum = models.FloatField(default=0.0)
    queue_n = models.BigIntegerField(default=0)
    oml_sum = models.FloatField(default=0.0)
    oml_n = models.BigIntegerField(default=0)
    lag_sum = models.FloatField(default=0.0)
    lag_n = models.BigIntegerField(default=0)
    fetch_sum = models.FloatField(default=0.0)
    fetch_n = models.BigIntegerField(default=0)
    durations = models.JSONField(
        default=dict, help_text="Succeeded jobs' durations (finished - created) by log bucket: {index: count}."
    )
    purged = models.BooleanField(default=False, help_text="Jobs retention removed (not rebuilt from rows).")

    class Meta:
        indexes = [
            # analytics over a window: WHERE hour >= ? AND hour < ?
            models.Index(fields=["hour"], name="job_rollup_hour_idx"),
            # analytics of an analyst (their own jobs), over a window
            models.Index(fields=["owner", "hour"], name="job_rollup_owner_hour_idx"),
            # "was any job of the window purged?" (whether the trend can be exact): the purged part is small, so
            # this index is too, and the answer no longer reads every rollup of the window (336 ms for an
            # analyst's year: bench/history.py)
            models.Index(fields=["hour"], condition=Q(purged=True), name="job_rollup_purged_hour_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.jobs} {self.state} {self.script_name} at {self.hour:%Y-%m-%d %H:00}"


class TeamRollup(models.Model):
    """The hourly rollups summed over owner, connection, script and kind: per hour of creation (UTC), team and
    final state, purged jobs included, with the succeeded jobs' histograms per script. What an administrator or
    a team's viewer reads when no owner, connection, script or kind is chosen: a year of a million jobs is
    94,000 of these against 886,000 hourly rollups (bench/history.py).

    Kept by jobs.services.rollups with the hourly rollups (as jobs end, in the same transaction; rebuilt from them by
    `rollups_rebuild`); a purge leaves it as it was, since each job counts once before and after.
    """

    hour = models.DateTimeField(help_text="The hour (UTC) the jobs were created in.")
    team = models.ForeignKey("accounts.Team", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    state = models.CharField(max_length=16)
    jobs = models.BigIntegerField(default=0)
    queue_sum = models.FloatField(default=0.0)
    queue_n = models.BigIntegerField(default=0)
    oml_sum = models.FloatField(default=0.0)
    oml_n = models.BigIntegerField(default=0)
    lag_sum = models.FloatField(default=0.0)
    lag_n = models.BigIntegerField(default=0)
    fetch_sum = models.FloatField(default=0.0)
    fetch_n = models.BigIntegerField(default=0)
    durations = models.JSONField(
        default=dict,
        help_text="Succeeded jobs' durations (finished - created) per script by log bucket: {script: {index: count}}.",
    )

    class Meta:
        indexes = [
            # analytics over a window: WHERE hour >= ? AND hour < ?
            models.Index(fields=["hour"], name="team_rollup_hour_idx"),
            # a team viewer's window, and finding a rollup to add to
            models.Index(fields=["team", "hour"], name="team_rollup_team_hour_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.jobs} {self.state} of team {self.team_id} at {self.hour:%Y-%m-%d %H:00}"
