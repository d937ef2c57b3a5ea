"""The API's operations for scripts and the command line (`omlpy`): clone with changes, compare two jobs, the
result in the pages' download formats, and who the caller is. Mounted by jobs.api.jobs, whose schemas they share."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError

from accounts.models import ApiToken
from accounts.tokens import hash_token
from audit.services import audit_record
from jobs.api.jobs import JobOut, _job_out
from jobs.api.schema import refusals, request_object
from jobs.models import Job, JobResult
from jobs.results.compare import compare_requests, compare_results, compare_timing
from jobs.results.export import XLSX_CONTENT_TYPE, download_response
from jobs.results.parquet import PARQUET_CONTENT_TYPE
from jobs.selectors import access
from jobs.services.jobs import job_clone

jobs_extra_router = Router(tags=["jobs"])
whoami_router = Router(tags=["account"])


# --- Clone --------------------------------------------------------------------------------------


CLONE_BODY = {
    "type": "object",
    "description": "Only the fields to change, named as in a submission; the rest come from the original.",
}


@jobs_extra_router.post(
    "/{job_id}/clone",
    response={201: JobOut, **refusals(400, 403, 404, 413)},
    summary="Submit a copy of a job with some fields changed",
    description="Fields given replace the original's, and null clears one. `parameters` is merged into the "
    "original's key by key (a key set to null is removed), as a JSON Merge Patch (RFC 7396) does. The new job's "
    "parent is the original. The result is checked by the same rules and limits as a submission.",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": CLONE_BODY}}}},
)
def clone_job(request, job_id: UUID):
    job = access.job_for_user(request.user, job_id)
    refusal = access.submit_refusal(request.user)
    if refusal is not None:
        raise HttpError(403, refusal)
    new = job_clone(job=job, actor=request.user, changes=request_object(request), request=request)
    return Status(201, _job_out(Job.objects.select_related("owner", "connection", "parent").get(pk=new.pk)))


# --- Compare ------------------------------------------------------------------------------------


class FieldDiffOut(Schema):
    field: str
    a: str
    b: str
    differs: bool


class TimingOut(Schema):
    phase: str
    a: float | None
    b: float | None
    delta: float | None


class CellDiffOut(Schema):
    row: int
    key: str
    column: str
    a: str
    b: str


class ResultComparisonOut(Schema):
    same: bool
    shape_a: str
    shape_b: str
    rows_a: int | None
    rows_b: int | None
    columns_a: list[str]
    columns_b: list[str]
    columns_only_a: list[str]
    columns_only_b: list[str]
    rows_compared: int
    limited: bool = Field(..., description="Only the first rows were compared.")
    differing_cells: int
    diffs: list[CellDiffOut] = Field(..., description="The first differing cells.")


class ComparisonOut(Schema):
    a: JobOut
    b: JobOut
    request: list[FieldDiffOut]
    timing: list[TimingOut]
    result: ResultComparisonOut | None = Field(..., description="Null unless both jobs have a result.")


@jobs_extra_router.get(
    "/{job_id}/compare/{other_id}",
    response={200: ComparisonOut, **refusals(400, 404)},
    summary="Compare two jobs: requests, timing, results",
)
def compare_jobs(request, job_id: UUID, other_id: UUID):
    a = access.job_for_user(request.user, job_id)
    b = access.job_for_user(request.user, other_id)
    result_a, result_b = JobResult.objects.filter(job=a).first(), JobResult.objects.filter(job=b).first()
    results: dict[str, Any] | None = None
    if result_a and result_b:
        comparison = compare_results(result_a, result_b)
        results = {
            **{name: getattr(comparison, name) for name in ResultComparisonOut.model_fields if name != "diffs"},
            "diffs": [vars(diff) for diff in comparison.diffs],
        }
    return {
        "a": _job_out(a),
        "b": _job_out(b),
        "request": [{"field": r.name, "a": r.a, "b": r.b, "differs": r.differs} for r in compare_requests(a, b)],
        "timing": [{"phase": t.phase, "a": t.a, "b": t.b, "delta": t.delta} for t in compare_timing(a, b)],
        "result": results,
    }


# --- Result downloads ---------------------------------------------------------------------------


@jobs_extra_router.get(
    "/{job_id}/result.{fmt}",
    response=refusals(400, 404, 410),
    summary="The result as a download: json (as received), csv, xlsx or parquet",
    description="The same bytes as the result page's downloads, streamed, as an attachment named after the "
    "script and the job.",
    openapi_extra={
        "responses": {
            200: {
                "description": "The result file",
                "content": {
                    content_type: {"schema": {"type": "string", "format": "binary"}}
                    for content_type in ("application/json", "text/csv", XLSX_CONTENT_TYPE, PARQUET_CONTENT_TYPE)
                },
            }
        }
    },
)
def download_result(request, job_id: UUID, fmt: Literal["json", "csv", "xlsx", "parquet"]):
    job = access.job_for_user(request.user, job_id)
    result = JobResult.objects.filter(job=job).first()
    if result is None and job.result_purged_at:
        raise HttpError(410, "This job's result was removed by retention; the job's record is kept.")
    if result is None:
        raise HttpError(404, f"This job has no result (state: {job.state}).")
    response = download_response(job, result, fmt)
    audit_record(
        action="result_download",
        request=request,
        target_type="job",
        target_id=str(job.uuid),
        details={"format": fmt, "via": "api"},
    )
    return response


# --- Who am I -----------------------------------------------------------------------------------


class TeamRoleOut(Schema):
    team: str
    role: str


class TokenOut(Schema):
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None


class WhoamiOut(Schema):
    username: str
    full_name: str
    email: str
    is_admin: bool
    can_submit: bool
    teams: list[TeamRoleOut]
    token: TokenOut | None = Field(..., description="The API token of this request; null for a browser session.")


@whoami_router.get(
    "", response={200: WhoamiOut, **refusals()}, summary="The signed-in user, their teams and roles, and the token used"
)
def whoami(request):
    user = request.user
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    token = None
    if scheme.lower() == "bearer" and raw.strip():
        token = ApiToken.objects.filter(key_hash=hash_token(raw.strip()), user=user).first()
    return {
        "username": user.get_username(),
        "full_name": user.get_full_name(),
        "email": user.email,
        "is_admin": access.is_admin(user),
        "can_submit": access.can_submit(user),
        "teams": [{"team": role.team_name, "role": role.role} for role in access.memberships(user)],
        "token": token,
    }
