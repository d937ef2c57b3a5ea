"""Pinning: a hold on a job that retention respects (jobs.services.retention never purges a pinned job or its result).
Every pin and unpin is audited with its reason. Who may pin is jobs.selectors.access.can_pin."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import AuditAction, audit_record
from jobs.models import Job, JobPin

REASON_MAX = 500


class PinError(ValueError):
    """A pin that cannot be made or removed as asked (the message says why, for the user)."""


def clean_reason(reason: object) -> str:
    text = str(reason or "").strip()
    if not text:
        raise PinError("Say why the job is pinned: a reason is required.")
    if len(text) > REASON_MAX:
        raise PinError(f"The reason is too long: at most {REASON_MAX} characters.")
    if "\x00" in text:
        raise PinError("The reason must not contain NUL characters.")
    return text


def job_pin(*, job: Job, actor, reason: str, request=None) -> JobPin:
    """Pin `job` with a reason; PinError if it is already pinned or no longer exists."""
    text = clean_reason(reason)
    try:
        with transaction.atomic():
            pin = JobPin.objects.create(
                job_id=job.pk,
                pinned_by=actor,
                pinned_by_username=actor.get_username(),
                pinned_at=timezone.now(),
                reason=text,
            )
            audit_record(
                action=AuditAction.PIN,
                actor=actor,
                request=request,
                target_type="job",
                target_id=str(job.uuid),
                details={"reason": text},
            )
    except IntegrityError:
        # Pinned meanwhile by someone else, or removed by retention an instant before.
        if JobPin.objects.filter(job_id=job.pk).exists():
            raise PinError("This job is already pinned.") from None
        raise PinError("This job no longer exists.") from None
    return pin


def job_unpin(*, job: Job, actor, request=None) -> None:
    """Remove the pin of `job`; PinError if it is not pinned."""
    with transaction.atomic():
        pin = JobPin.objects.select_for_update().filter(job_id=job.pk).first()
        if pin is None:
            raise PinError("This job is not pinned.")
        pin.delete()
        audit_record(
            action=AuditAction.UNPIN,
            actor=actor,
            request=request,
            target_type="job",
            target_id=str(job.uuid),
            details={"reason": pin.reason, "pinned_by": pin.pinned_by_username},
        )


def pin_of(job: Job) -> JobPin | None:
    return JobPin.objects.filter(job_id=job.pk).first()
