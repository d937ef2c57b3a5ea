"""Every write the engine makes to its tables. A job changes state only through `job_transition`."""

from __future__ import annotations

import ast
import json
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from .errors import EngineError, bad_request
from .models import EngineCall, EngineJob, EngineScript, EngineUser
from .protocol import Execution

State = EngineJob.State
TIMER_SCRIPT = "timer"


# --- users and scripts ----------------------------------------------------------------------------
def user_ensure(*, username: str, password: str) -> bool:
    """Create the user if absent (user names are upper case, as Oracle's are); answer whether it was created."""
    _, created = EngineUser.objects.get_or_create(
        username=username.upper(), defaults={"password": make_password(password)}
    )
    return created


def script_save(*, name: str, owner: str, source: str, description: str = "", is_global: bool = False) -> EngineScript:
    """Register or replace a script; its source must parse and define a function."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ValueError(f"The source of {name} does not parse: {exc}") from None
    if not any(isinstance(node, ast.FunctionDef) for node in tree.body):
        raise ValueError(f"The source of {name} defines no function.")
    script, _ = EngineScript.objects.update_or_create(
        name=name,
        owner=owner.upper(),
        # A replaced script is a new version: its listed date is the replacement's, as OML's is.
        defaults={"source": source, "description": description, "is_global": is_global, "created_at": timezone.now()},
    )
    return script


def script_remove(*, name: str, owner: str) -> bool:
    deleted, _ = EngineScript.objects.filter(name=name, owner=owner.upper()).delete()
    return deleted > 0


# --- calls and jobs -------------------------------------------------------------------------------
def call_record(*, owner: str, api_version: str, execution: Execution, script: EngineScript) -> EngineCall:
    """Log an accepted synchronous POST."""
    return EngineCall.objects.create(
        owner=owner, api_version=api_version, kind=execution.kind, script_name=script.name, async_flag=False
    )


def job_create(
    *, owner: str, api_version: str, execution: Execution, script: EngineScript, timer_scripts: bool
) -> EngineJob:
    """Queue an async job and log the POST that created it, in one transaction.

    A timer script's job (when timer scripts are on) is created running with a due time and its result
    already written: no worker ever claims it, and the first status or result request after its due time
    completes it (`job_status`, `job_observe`).
    """
    now = timezone.now()
    fields: dict[str, Any] = {}
    if timer_scripts and script.name == TIMER_SCRIPT:
        seconds = _timer_seconds(execution.kwargs)
        fields = {
            "is_timer": True,
            "state": State.RUNNING,
            "started_at": now,
            "due_at": now + timedelta(seconds=seconds),
            "result": json.dumps({"slept": seconds}, separators=(",", ":")),
        }
    with transaction.atomic():
        job = EngineJob.objects.create(
            owner=owner,
            api_version=api_version,
            kind=execution.kind,
            script_name=script.name,
            script_owner=script.owner,
            request=execution.to_json(),
            service=execution.service,
            timeout=execution.timeout,
            **fields,
        )
        EngineCall.objects.create(
            owner=owner, api_version=api_version, kind=execution.kind, script_name=script.name, async_flag=True, job=job
        )
    return job


def _timer_seconds(kwargs: dict[str, Any]) -> float:
    """The timer's duration: `seconds`, or with `jitter` (a lognormal sigma from 0 to 1) a duration drawn
    around it, so that calls with the same arguments vary as recurring real jobs do."""
    seconds = kwargs.get("seconds", 1.0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= 43200:
        raise bad_request('The timer script needs "seconds": a number from 0 to 43200.')
    jitter = kwargs.get("jitter", 0)
    if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter <= 1:
        raise bad_request('The timer script\'s "jitter" is a number from 0 to 1.')
    if jitter:
        seconds = min(seconds * math.exp(random.gauss(0, jitter)), 43200)
    return float(seconds)


def job_transition(*, job_id: Any, from_states: tuple[str, ...], to_state: str, **fields: Any) -> bool:
    """The one writer of job state: move the job if it is in one of `from_states`; answer whether it moved."""
    moved = EngineJob.objects.filter(pk=job_id, state__in=from_states).update(state=to_state, **fields)
    return moved == 1


def job_claim(*, job_id: Any, worker: str) -> bool:
    now = timezone.now()
    return job_transition(
        job_id=job_id,
        from_states=(State.QUEUED,),
        to_state=State.RUNNING,
        worker=worker,
        started_at=now,
        heartbeat_at=now,
    )


def job_succeed(*, job_id: Any, result: str) -> bool:
    return job_transition(
        job_id=job_id, from_states=(State.RUNNING,), to_state=State.SUCCEEDED, result=result, finished_at=timezone.now()
    )


def job_fail(*, job_id: Any, error: EngineError, from_states: tuple[str, ...] = (State.RUNNING,)) -> bool:
    return job_transition(
        job_id=job_id,
        from_states=from_states,
        to_state=State.FAILED,
        error_status=error.status,
        error_code=error.code,
        error_message=error.message,
        finished_at=timezone.now(),
    )


def job_delete(*, job_id: Any, owner: str) -> bool:
    """Mark the owner's job deleted; the worker running it sees that and kills its process."""
    if not EngineJob.objects.filter(pk=job_id, owner=owner).exists():
        return False
    return job_transition(
        job_id=job_id,
        from_states=(State.QUEUED, State.RUNNING, State.SUCCEEDED, State.FAILED),
        to_state=State.DELETED,
        finished_at=Coalesce(F("finished_at"), Value(timezone.now())),
    )


@dataclass(frozen=True)
class JobStatus:
    """What a status request answers from: the job's id, state and creation time."""

    pk: Any
    state: str
    created_at: datetime


def job_status(*, job_id: Any, owner: str) -> JobStatus | None:
    """A status request: count it and read the owner's job state, completing a due timer; None when the job is
    not the owner's (or does not exist, or was deleted).

    Two statements on the job's primary key, the counting UPDATE and a SELECT of four columns (never the result
    text or the request), and a third only once in a timer job's life, when it completes: status requests are
    what a dashboard sends most, so they never read more of the row than the answer needs.
    """
    if job_id is None:
        return None
    jobs = EngineJob.objects.filter(pk=job_id, owner=owner).exclude(state=State.DELETED)
    if jobs.update(status_requests=F("status_requests") + 1) == 0:
        return None
    row = next(iter(jobs.values_list("state", "created_at", "is_timer", "due_at")[:1]), None)
    if row is None:  # deleted between the two statements
        return None
    state, created_at, is_timer, due_at = row
    if is_timer and state == State.RUNNING and due_at <= timezone.now():
        if job_transition(job_id=job_id, from_states=(State.RUNNING,), to_state=State.SUCCEEDED, finished_at=due_at):
            state = State.SUCCEEDED
        else:  # moved by another request meanwhile (completed, or deleted)
            state = jobs.values_list("state", flat=True).first() or State.DELETED
            if state == State.DELETED:
                return None
    return JobStatus(pk=job_id, state=state, created_at=created_at)


def job_observe(*, job_id: Any, owner: str, count_status_request: bool) -> EngineJob | None:
    """Read the owner's job for a status or result request, counting status requests and completing a due timer."""
    jobs = EngineJob.objects.filter(pk=job_id, owner=owner).exclude(state=State.DELETED)
    if count_status_request and jobs.update(status_requests=F("status_requests") + 1) == 0:
        return None
    job = jobs.first()
    if job is not None and job.is_timer and job.state == State.RUNNING and job.due_at <= timezone.now():
        job_transition(job_id=job.pk, from_states=(State.RUNNING,), to_state=State.SUCCEEDED, finished_at=job.due_at)
        job.refresh_from_db()
    return job


def job_heartbeat(*, job_ids: list[Any], worker: str) -> None:
    EngineJob.objects.filter(pk__in=job_ids, worker=worker, state=State.RUNNING).update(heartbeat_at=timezone.now())


def jobs_purge(*, before: datetime) -> int:
    """Forget jobs (and the POST log) created before the retention period; no job runs for that long."""
    deleted, _ = EngineJob.objects.filter(created_at__lt=before).delete()
    EngineCall.objects.filter(created_at__lt=before).delete()
    return deleted
