"""Notification rules, the outbox of notifications they cause, and the connection episodes `connection_down`
reports. A Notification row is written in the transaction of the job transition (or sweep) that causes it; a
worker then delivers it at least once, each with a stable idempotency key."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Event(models.TextChoices):
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    TIMED_OUT = "timed_out", "Timed out"
    CANCELLED = "cancelled", "Cancelled"
    SLOW = "slow", "Slow (running longer than its history says)"
    STUCK = "stuck", "Stuck (OML has not answered its polls)"
    CONNECTION_DOWN = "connection_down", "Connection down (and its recovery)"
    # Not chosen by rules: the one notification that stands for those a busy rule held back.
    DIGEST = "digest", "Digest"


# What a rule may ask for.
RULE_EVENTS = tuple(event for event in Event.values if event != "digest")


# The events a job's last transition causes: the state it moved to is the event.
TRANSITION_EVENTS = frozenset({Event.SUCCEEDED, Event.FAILED, Event.TIMED_OUT, Event.CANCELLED})
# What only the sweep sees.
WATCH_EVENTS = frozenset({Event.SLOW, Event.STUCK})


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"
    INAPP = "inapp", "In the app"
    APPRISE = "apprise", "Other service (Apprise URL)"


class NotificationRule(models.Model):
    class Scope(models.TextChoices):
        MINE = "mine", "My jobs"
        TEAM = "team", "The team's jobs"

    class Format(models.TextChoices):
        JSON = "json", "JSON"
        SLACK = "slack", "Slack-compatible"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_rules")
    name = models.CharField(max_length=100, blank=True)
    scope = models.CharField(max_length=4, choices=Scope.choices, default=Scope.MINE)
    # The team whose jobs a team rule watches (a team the owner leads); for a `mine` rule, none.
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    events = models.JSONField(default=list, help_text="A list of Event values.")
    script = models.CharField(max_length=128, blank=True, help_text="Only jobs of this script (blank: any).")
    connection = models.ForeignKey("jobs.Connection", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    kind = models.CharField(max_length=20, blank=True, help_text="Only jobs of this kind (blank: any).")
    factor = models.FloatField(default=1.5, help_text="slow: beyond the script's learned p95 times this.")
    minutes = models.PositiveIntegerField(default=60, help_text="slow: for a script with no history.")
    stuck_minutes = models.PositiveIntegerField(default=15, help_text="stuck: OML unanswered for this long.")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    # The address, webhook URL or Apprise URL, encrypted at rest (jobs.crypto) like OML passwords.
    target_encrypted = models.TextField(blank=True, editable=False)
    # The webhook's signing secret, encrypted too; shown once, when the rule is created.
    secret_encrypted = models.TextField(blank=True, editable=False)
    format = models.CharField(max_length=5, choices=Format.choices, default=Format.JSON)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The outbox's match at every job's last transition: the rules of the job's owner, and of its team.
            models.Index(fields=["owner"], condition=Q(enabled=True, scope="mine"), name="notifyrule_mine_idx"),
            models.Index(fields=["team"], condition=Q(enabled=True, scope="team"), name="notifyrule_team_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(scope="mine", team__isnull=True) | Q(scope="team", team__isnull=False),
                name="notifyrule_scope_team",
            ),
            models.CheckConstraint(
                condition=Q(channel__in=["email", "webhook", "inapp", "apprise"]), name="notifyrule_channel_valid"
            ),
            models.CheckConstraint(condition=Q(format__in=["json", "slack"]), name="notifyrule_format_valid"),
            models.CheckConstraint(
                condition=Q(factor__gte=1.0, minutes__gte=1, stuck_minutes__gte=1), name="notifyrule_thresholds"
            ),
        ]

    def __str__(self) -> str:
        return self.name or f"Rule {self.pk}"

    @property
    def target(self) -> str:
        from jobs.crypto import decrypt

        return decrypt(self.target_encrypted) if self.target_encrypted else ""

    @property
    def secret(self) -> str:
        from jobs.crypto import decrypt

        return decrypt(self.secret_encrypted) if self.secret_encrypted else ""

    def wants(self, event: str) -> bool:
        return event in (self.events or [])


class Notification(models.Model):
    """One notification of one rule: the outbox row a worker delivers, and, for the in-app channel, the
    message in the recipient's list (read or not)."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed (gave up)"
        # Held for the rule's digest (the rule fired more than NOTIFY_DIGEST_AFTER times in the window).
        HELD = "held", "Held for a digest"
        DIGESTED = "digested", "Sent in a digest"

    rule = models.ForeignKey(NotificationRule, on_delete=models.CASCADE, related_name="notifications")
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    event = models.CharField(max_length=16, choices=Event.choices)
    # The job (null for a connection's or a digest's); its uuid stays when retention removes the job.
    job = models.ForeignKey("jobs.Job", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    job_uuid = models.UUIDField(null=True, blank=True)
    connection = models.ForeignKey(
        "jobs.Connection", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Stable across retries: the webhook's Idempotency-Key and body, the email's Message-ID.
    key = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    subject = models.CharField(max_length=300)
    message = models.TextField()
    # What the webhook and the email carry (the job object, the expected figures).
    payload = models.JSONField(default=dict)
    digest = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="digested")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The delivery pass: undelivered rows whose attempt is due, oldest first.
            models.Index(fields=["next_attempt_at"], condition=Q(state="pending"), name="notification_due_idx"),
            # The rule's page and its digest count: a rule's notifications, newest first.
            models.Index(fields=["rule", "-created_at"], name="notification_rule_idx"),
            # The job page's deliveries.
            models.Index(fields=["job_uuid"], name="notification_job_idx"),
            # The bell: a user's unread in-app notifications.
            models.Index(
                fields=["recipient", "-created_at"],
                condition=Q(channel="inapp", read_at__isnull=True),
                name="notification_unread_idx",
            ),
            # The digest pass: held rows.
            models.Index(fields=["rule", "created_at"], condition=Q(state="held"), name="notification_held_idx"),
            # Retention: oldest first.
            models.Index(fields=["created_at"], name="notification_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["pending", "delivered", "failed", "held", "digested"]),
                name="notification_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.subject


class ConnectionEpisode(models.Model):
    """A time a connection's token or status requests kept failing: one `connection_down` notification per
    rule and episode when it has lasted NOTIFY_CONNECTION_DOWN_AFTER, and one recovery notice when it ends."""

    connection = models.ForeignKey("jobs.Connection", on_delete=models.CASCADE, related_name="+")
    started_at = models.DateTimeField()
    notified_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # At most one open episode per connection.
            models.UniqueConstraint(
                fields=["connection"], condition=Q(ended_at__isnull=True), name="connection_episode_one_open"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.connection_id} down since {self.started_at}"
