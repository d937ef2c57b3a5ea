"""Pins through the API: a pinned job and its result are never removed by retention (a legal hold). Mounted by
jobs.api.jobs, whose schemas it shares."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from ninja import Router, Status
from ninja.errors import HttpError

from jobs.api.jobs import JobOut, _job_out
from jobs.api.schema import refusals, request_object
from jobs.models import Job
from jobs.selectors import access
from jobs.services import jsontext
from jobs.services.pins import PinError, job_pin, job_unpin

pins_router = Router(tags=["jobs"])


def _pin_reason(body: dict[str, Any]) -> str:
    """The body's `reason`, as PIN_BODY publishes it: text of 1-500 characters, not only blanks; nothing else."""
    errors = {name: ["Unknown field."] for name in sorted(set(body) - {"reason"})}
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        errors["reason"] = ["Say why the job is kept: text, not only blanks."]
    elif len(reason) > 500:
        errors["reason"] = ["At most 500 characters."]
    elif problem := jsontext.value_problem(reason):
        errors["reason"] = [problem]
    if errors:
        raise DjangoValidationError(errors)
    return reason


def _pinnable(request, job_id: UUID) -> Job:
    job = access.job_for_user(request.user, job_id)
    if not access.can_pin(request.user, job):
        raise HttpError(403, "Only the job's owner, its team's leads and auditors, and administrators may pin it.")
    return job


PIN_BODY = {
    "type": "object",
    "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 500, "pattern": "\\S"}},
    "required": ["reason"],
    "additionalProperties": False,
}


@pins_router.post(
    "/{job_id}/pin",
    response={201: JobOut, **refusals(400, 403, 404, 409, 413)},
    summary="Pin a job: retention keeps it and its result",
    description="`reason` says why the job is kept (e.g. a legal hold). 409: the job is pinned already.",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": PIN_BODY}}}},
)
def pin_job(request, job_id: UUID):
    # Read by the depth-safe reader, as a submission is: a body nested thousands deep is a 400, not a crash.
    reason = _pin_reason(request_object(request))
    job = _pinnable(request, job_id)
    try:
        job_pin(job=job, actor=request.user, reason=reason, request=request)
    except PinError as exc:
        raise HttpError(409 if "already" in str(exc) or "no longer" in str(exc) else 400, str(exc)) from None
    return Status(201, _job_out(access.job_for_user(request.user, job_id), detail=True))


@pins_router.delete(
    "/{job_id}/pin",
    response={200: JobOut, **refusals(400, 403, 404, 409)},
    summary="Unpin a job: retention applies to it again",
)
def unpin_job(request, job_id: UUID):
    job = _pinnable(request, job_id)
    try:
        job_unpin(job=job, actor=request.user, request=request)
    except PinError as exc:
        raise HttpError(409, str(exc)) from None
    return _job_out(access.job_for_user(request.user, job_id), detail=True)
