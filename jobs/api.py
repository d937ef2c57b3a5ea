"""The JSON API under /api/v1/, documented at /api/v1/openapi.json.

Handlers are thin: validation is jobs.specs.parse_job_request, writes are jobs.services, reads are
jobs.selectors, and visibility is jobs.access, exactly as for the pages.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from ninja import Field, Header, NinjaAPI, Path, Query, Router, Schema, Status
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import HttpBearer, django_auth
from pydantic import field_validator

from omlpy_dashboard.outage import DATABASE_ERRORS, database_unavailable

from . import access, idempotency, selectors, services
from .api_docs import VendoredSwagger
from .audit import audit_record
from .models import Connection, Job
from .oml.client import client_for
from .oml.errors import OMLError

# The largest id the database stores (64-bit); a bigger number is refused as invalid, not sent to the database.
MAX_ID = 2**63 - 1


class BearerToken(HttpBearer):
    """`Authorization: Bearer <personal API token>`."""

    def authenticate(self, request: HttpRequest, token: str):
        from accounts.tokens import user_for_token

        user = user_for_token(token)
        if user is not None:
            request.user = user
        return user


api = NinjaAPI(
    title="OMLPy Dashboard API",
    version="1",
    description="Submit and follow OML4Py Embedded Python Execution jobs. Authenticate with a personal API "
    "token (`Authorization: Bearer ...`) or the browser session.",
    auth=[BearerToken(), django_auth],
    urls_namespace="api",
    docs=VendoredSwagger(),
)


# --- Errors: always JSON with a clear message ---------------------------------------------------


@api.exception_handler(DjangoValidationError)
def _invalid(request, exc: DjangoValidationError):
    errors = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
    return api.create_response(request, {"detail": "The request is not valid.", "errors": errors}, status=400)


@api.exception_handler(NinjaValidationError)
def _malformed(request, exc: NinjaValidationError):
    errors: dict[str, list[str]] = {}
    for error in exc.errors:
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path", "payload")]
        errors.setdefault(".".join(location) or "__all__", []).append(str(error.get("msg", "invalid value")))
    return api.create_response(request, {"detail": "The request is not valid.", "errors": errors}, status=400)


@api.exception_handler(Http404)
def _not_found(request, exc):
    return api.create_response(request, {"detail": "Not found."}, status=404)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    return api.create_response(
        request, {"detail": "Authentication required: a Bearer API token or a signed-in session."}, status=401
    )


# The database is down: 503 with Retry-After, as for pages (the API's own handlers see these errors first).
for _database_error in DATABASE_ERRORS:
    api.add_exception_handler(_database_error, database_unavailable)


# --- Schemas ------------------------------------------------------------------------------------


class JobIn(Schema):
    connection: int | str | None = Field(None, description="Connection id or name; the default when omitted.")
    kind: str = Field(..., description="do_eval, table_apply, row_apply, group_apply or index_apply")
    script: str
    script_owner: str = ""
    input: str | None = None
    parameters: dict[str, Any] | str | None = Field(None, description="A JSON object (or JSON text of one).")
    rows: int | None = None
    groupBy: str | None = None
    orderBy: str | None = None
    times: int | None = None
    parallelFlag: bool | None = None
    parallel: int | None = None
    service: str | None = None
    asyncFlag: bool = True
    timeout: int | None = None
    graphicsFlag: bool = False
    envName: str | None = None


class TransitionOut(Schema):
    from_state: str
    to_state: str
    at: datetime
    reason: str
    http_status: int | None
    latency_ms: int | None
    detail: dict


class ResultInfo(Schema):
    size_bytes: int
    sha256: str
    content_type: str
    row_count: int | None
    shape: str


class ConnectionOut(Schema):
    id: int
    name: str
    base_url: str
    api_version: str
    username: str
    poll_budget: int
    is_default: bool


class JobOut(Schema):
    id: UUID
    state: str
    kind: str
    script: str
    script_owner: str
    owner: str
    connection: str
    request: dict
    async_flag: bool
    oml_job_id: str
    oml_job_url: str
    oml_result_url: str
    last_error: str
    poll_count: int
    oml_elapsed_seconds: float | None = Field(None, description="OML's elapsedTime at the last status poll.")
    parent: UUID | None
    script_sha256: str
    created_at: datetime
    submitted_at: datetime | None
    oml_accepted_at: datetime | None
    oml_finished_at: datetime | None
    result_fetched_at: datetime | None
    finished_at: datetime | None
    next_poll_at: datetime | None
    durations: dict[str, float | None]
    result: ResultInfo | None = None
    transitions: list[TransitionOut] | None = None


class JobPage(Schema):
    items: list[JobOut]
    next_cursor: str | None


class ScriptOut(Schema):
    name: str
    owner: str
    description: str
    date: str
    script: str


def _job_out(job: Job, *, detail: bool = False) -> dict:
    durations = selectors.job_durations(job)
    durations.pop("running", None)
    data = {
        "id": job.uuid,
        "state": job.state,
        "kind": job.kind,
        "script": job.script_name,
        "script_owner": job.script_owner,
        "owner": job.owner.username,
        "connection": job.connection.name,
        "request": job.oml_body(),
        "async_flag": job.async_flag,
        "oml_job_id": job.oml_job_id,
        "oml_job_url": job.oml_job_url,
        "oml_result_url": job.oml_result_url,
        "last_error": job.last_error,
        "poll_count": job.poll_count,
        "oml_elapsed_seconds": job.oml_elapsed_seconds,
        "parent": job.parent.uuid if job.parent_id and job.parent else None,
        "script_sha256": job.script_sha256,
        "created_at": job.created_at,
        "submitted_at": job.submitted_at,
        "oml_accepted_at": job.oml_accepted_at,
        "oml_finished_at": job.oml_finished_at,
        "result_fetched_at": job.result_fetched_at,
        "finished_at": job.finished_at,
        "next_poll_at": job.next_poll_at,
        "durations": durations,
    }
    if detail:
        result = getattr(job, "result", None) if hasattr(job, "result") else None
        data["result"] = (
            {
                "size_bytes": result.size_bytes,
                "sha256": result.sha256,
                "content_type": result.content_type,
                "row_count": result.row_count,
                "shape": result.shape,
            }
            if result
            else None
        )
        data["transitions"] = selectors.job_timeline(job)
    return data


# --- Jobs ---------------------------------------------------------------------------------------

jobs_router = Router(tags=["jobs"])


IDEMPOTENCY_KEY_HELP = (
    "Any 1-255 visible ASCII characters. A repeat with the same key within a day answers 200 with the job the "
    "first request created instead of creating another; the same key with a different request answers 422."
)


@jobs_router.post("", response={200: JobOut, 201: JobOut}, summary="Submit a job")
def create_job(
    request,
    payload: JobIn,
    idempotency_key: str | None = Header(
        None, alias="Idempotency-Key", pattern=r"^[\x21-\x7e]{1,255}$", description=IDEMPOTENCY_KEY_HELP
    ),
):
    if not access.can_submit(request.user):
        raise HttpError(403, "Your role is read-only: it cannot submit jobs.")
    if idempotency_key is not None:
        try:
            job, created = idempotency.job_create_once(
                owner=request.user, key=idempotency_key, data=payload.dict(exclude_unset=True), request=request
            )
        except idempotency.IdempotencyKeyReusedError as exc:
            raise HttpError(422, str(exc)) from None
        return Status(201 if created else 200, _job_out(job))
    spec = services.parse_job_request(payload.dict(exclude_unset=True))
    # The created instance already holds its owner and connection and has no parent: no need to read it back.
    return Status(201, _job_out(services.job_create(owner=request.user, spec=spec, request=request)))


class JobFilters(Schema):
    state: list[str] = Field(default_factory=list)
    kind: list[str] = Field(default_factory=list)
    script: str = ""
    owner: str = ""
    connection: int | None = Field(None, ge=1, le=MAX_ID)
    created_from: datetime | None = None
    created_to: datetime | None = None
    q: str = Field("", description="A job id, an OML job id or the start of a script name.")
    cursor: str | None = None
    limit: int = Field(50, ge=1, le=selectors.MAX_PAGE)

    @field_validator("state", "kind", "script", "owner", "q", "cursor")
    @classmethod
    def _no_nul(cls, value):
        # PostgreSQL cannot compare text with a NUL character: refuse it here rather than fail in the query.
        if any("\x00" in item for item in (value if isinstance(value, list) else [value or ""])):
            raise ValueError("Must not contain NUL characters.")
        return value

    @field_validator("created_from", "created_to")
    @classmethod
    def _representable(cls, value: datetime | None):
        # Sent to the database in UTC (PostgreSQL refuses offsets beyond 16 hours); a time at the very edge of
        # the calendar may not exist there.
        if value is None or value.tzinfo is None:
            return value
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("Out of range.") from None


@jobs_router.get("", response=JobPage, summary="List jobs, newest first (keyset pages)")
def list_jobs(request, filters: Query[JobFilters]):
    history = selectors.HistoryFilters(
        state=filters.state,
        kind=filters.kind,
        script=filters.script,
        owner=filters.owner,
        connection=filters.connection,
        created_from=filters.created_from,
        created_to=filters.created_to,
        search=filters.q,
    )
    try:
        page = selectors.job_history(request.user, history, cursor=filters.cursor, limit=filters.limit)
    except ValueError as exc:
        raise HttpError(400, str(exc)) from None
    return {"items": [_job_out(job) for job in page.items], "next_cursor": page.next_cursor}


@jobs_router.get("/{job_id}", response=JobOut, summary="One job with its transitions")
def get_job(request, job_id: UUID):
    return _job_out(access.job_for_user(request.user, job_id), detail=True)


@jobs_router.get("/{job_id}/result", summary="The result body exactly as OML sent it")
def get_result(request, job_id: UUID):
    job = access.job_for_user(request.user, job_id)
    result = getattr(job, "result", None) if hasattr(job, "result") else None
    if result is None:
        raise HttpError(404, f"This job has no result (state: {job.state}).")
    audit_record(
        action="result_download",
        request=request,
        target_type="job",
        target_id=str(job.uuid),
        details={"format": "api"},
    )
    response = StreamingHttpResponse(services.result_iter_chunks(result), content_type=result.content_type)
    response["Content-Length"] = str(result.size_bytes)
    response["X-Result-SHA256"] = result.sha256
    return response


def _modifiable(request, job_id: UUID) -> Job:
    job = access.job_for_user(request.user, job_id)
    if not access.can_modify(request.user, job):
        raise HttpError(403, "Only the job's owner may cancel or re-run it.")
    return job


@jobs_router.post("/{job_id}/cancel", response=JobOut, summary="Cancel a job that has not ended")
def cancel_job(request, job_id: UUID):
    job = _modifiable(request, job_id)
    if not services.job_cancel(job=job, actor=request.user, request=request):
        raise HttpError(409, f"The job has already ended ({job.state}).")
    return _job_out(access.job_for_user(request.user, job_id))


@jobs_router.post("/{job_id}/rerun", response={201: JobOut}, summary="Run the same request again")
def rerun_job(request, job_id: UUID):
    job = _modifiable(request, job_id)
    new = services.job_rerun(job=job, actor=request.user, request=request)
    return Status(201, _job_out(Job.objects.select_related("owner", "connection", "parent").get(pk=new.pk)))


# --- Connections --------------------------------------------------------------------------------

connections_router = Router(tags=["connections"])


@connections_router.get("", response=list[ConnectionOut], summary="Connections to OML services")
def list_connections(request):
    return list(Connection.objects.order_by("name"))


@connections_router.get("/{connection_id}/scripts", response=list[ScriptOut], summary="Scripts on that service")
def list_scripts(request, connection_id: int = Path(..., ge=1, le=MAX_ID)):
    connection = get_object_or_404(Connection, pk=connection_id)
    try:
        return client_for(connection).scripts()
    except OMLError as exc:
        raise HttpError(502, f"OML did not list its scripts: {exc}") from None


api.add_router("/jobs", jobs_router)
api.add_router("/connections", connections_router)


# Operations for scripts and the command line; imported last, as they use the schemas above.
from .api_extra import jobs_extra_router, whoami_router  # noqa: E402

api.add_router("/jobs", jobs_extra_router)
api.add_router("/whoami", whoami_router)
