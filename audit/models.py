"""The audit trail's one table (DESIGN.md "Data"): an append-only, chained record of user actions."""

from django.conf import settings
from django.db import models


class AuditEntryImmutableError(Exception):
    """Audit entries are append-only: nothing updates or deletes them."""


class AuditEntryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        # The one change allowed: deleting a user sets `actor` to NULL (SET_NULL); `actor_username` stays,
        # and the hash does not cover `actor`.
        if kwargs.keys() <= {"actor", "actor_id"} and all(value is None for value in kwargs.values()):
            return super().update(**kwargs)
        raise AuditEntryImmutableError("Audit entries cannot be changed.")

    def delete(self):
        raise AuditEntryImmutableError("Audit entries cannot be deleted.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise AuditEntryImmutableError("Audit entries cannot be changed.")

    def update_or_create(self, *args, **kwargs):
        raise AuditEntryImmutableError("Audit entries cannot be changed.")


class AuditEntry(models.Model):
    """An append-only record of a user action. Each entry signs its content and the previous entry's hash with
    an HMAC under AUDIT_HMAC_KEYS (entries written before the chain was keyed: a plain SHA-256).

    audit.services.audit_record is the only writer. Updates and deletes are refused here, and by a trigger as well
    (accounts migration 0002, extended to `key_id` by jobs migration 0005).
    """

    at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="audit_entries"
    )
    actor_username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=40)
    ip = models.GenericIPAddressField(null=True, blank=True)
    target_type = models.CharField(max_length=40, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64, blank=True)
    entry_hash = models.CharField(max_length=64, blank=True)
    key_id = models.CharField(
        max_length=16,
        blank=True,
        help_text="Which AUDIT_HMAC_KEYS key signed the entry (a digest's prefix, not the key); empty: unkeyed.",
    )

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        # The table the trail was first written to (when it lived in the jobs app), kept so that no row moves
        # and the append-only trigger, which names it, stays as it is.
        db_table = "jobs_auditentry"
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [
            # audit page: newest first, optionally by actor / action / target; keyset on (at, id)
            models.Index(fields=["-at", "-id"], name="audit_time_idx"),
            models.Index(fields=["actor", "-at", "-id"], name="audit_actor_idx"),
            models.Index(fields=["action", "-at", "-id"], name="audit_action_idx"),
            models.Index(fields=["target_id", "-at", "-id"], name="audit_target_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_username} {self.action}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AuditEntryImmutableError("Audit entries cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditEntryImmutableError("Audit entries cannot be deleted.")
