"""Submissions with an `Idempotency-Key`: a client that retries after a timeout never runs a job twice.

The first request with a key creates the job and records the key beside it, in one transaction. A repeat of
the key by the same user within IDEMPOTENCY_WINDOW answers that job, whatever became of it; the same key with a
different request is refused (422), as the IETF's Idempotency-Key draft asks. After the window the key is free
again. Two requests racing with one key meet at the unique constraint on (owner, key): the loser rolls its job
back (with its audit entry and its message to the worker) and answers the winner's job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from jobs.models import IdempotencyKey, Job
from jobs.services.jobs import job_create
from jobs.services.specs import parse_job_request

IDEMPOTENCY_WINDOW = timedelta(days=1)


class IdempotencyKeyReusedError(Exception):
    """The key was used within the window for a different request."""


class _KeyTakenError(Exception):
    pass


def request_fingerprint(data: Mapping[str, Any]) -> str:
    """A hash of a submission as sent (its fields, in any order)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _earlier_job(owner, key: str, fingerprint: str) -> Job | None:
    cutoff = timezone.now() - IDEMPOTENCY_WINDOW
    record = IdempotencyKey.objects.filter(owner=owner, key=key, created_at__gte=cutoff).first()
    if record is None:
        return None
    if record.request_sha256 != fingerprint:
        raise IdempotencyKeyReusedError(
            "This Idempotency-Key was used in the last day for a different request; send a new key."
        )
    return Job.objects.select_related("owner", "connection", "parent").get(pk=record.job_id)


def job_create_once(*, owner, key: str, data: Mapping[str, Any], request=None) -> tuple[Job, bool]:
    """The job that `data` submitted under `key`: created now (True), or the one created earlier (False).

    Raises ValidationError for a request that is not valid, IdempotencyKeyReusedError for a key reused with
    a different request.
    """
    fingerprint = request_fingerprint(data)
    earlier = _earlier_job(owner, key, fingerprint)
    if earlier is not None:
        return earlier, False
    spec = parse_job_request(data, user=owner)
    now = timezone.now()
    try:
        with transaction.atomic():
            # A key older than the window is free again: its record makes way for the new one.
            IdempotencyKey.objects.filter(owner=owner, key=key, created_at__lt=now - IDEMPOTENCY_WINDOW).delete()
            job = job_create(owner=owner, spec=spec, request=request)
            try:
                with transaction.atomic():
                    IdempotencyKey.objects.create(
                        owner=owner, key=key, request_sha256=fingerprint, job=job, created_at=now
                    )
            except IntegrityError:
                # Another request with this key committed first: undo this job, answer that one.
                raise _KeyTakenError from None
    except _KeyTakenError:
        winner = _earlier_job(owner, key, fingerprint)
        if winner is None:  # the other request's record is the newest there can be: never expired
            raise RuntimeError(f"idempotency key {key!r} conflicts with no recorded job") from None
        return winner, False
    return job, True
