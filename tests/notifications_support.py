"""Arrangement for the notification tests: rules made through notifications.services, jobs moved through
jobs.services.jobs.job_transition (so that the outbox is written exactly as in production)."""

from __future__ import annotations

from django.utils import timezone

from jobs.models import Job
from jobs.services.jobs import job_transition
from jobs.states import JobState
from notifications.services import RuleInput, rule_create
from tests.results_support import make_job

S = JobState


def make_rule(user, **fields):
    data = RuleInput(**{"events": ["failed"], "channel": "inapp", **fields})
    return rule_create(user=user, data=data)


def run_job(owner, *, to_state: str = S.FAILED, error: str = "ORA-20000: boom", **fields) -> Job:
    """A job moved queued -> submitting -> pending -> `to_state` (pending stops there)."""
    job = make_job(owner, **fields)
    now = timezone.now()
    assert job_transition(job_id=job.pk, to_state=S.SUBMITTING, reason="test", submitted_at=now)
    assert job_transition(job_id=job.pk, to_state=S.PENDING, reason="test", oml_accepted_at=now, next_poll_at=now)
    if to_state == S.SUCCEEDED:
        assert job_transition(job_id=job.pk, to_state=S.FETCHING, reason="test", oml_finished_at=now)
        assert job_transition(job_id=job.pk, to_state=S.SUCCEEDED, reason="test")
    elif to_state != S.PENDING:
        assert job_transition(job_id=job.pk, to_state=to_state, reason="test", last_error=error)
    job.refresh_from_db()
    return job
