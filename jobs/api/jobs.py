"""The JSON API under /api/v1/, documented at /api/v1/openapi.json.

Handlers are thin: validation is jobs.services.specs.parse_job_request, writes are jobs.services.jobs, reads are
jobs.selectors.jobs, and visibility is jobs.selectors.access, exactly as for the pages.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, StreamingHttpResponse
from ninja import Field, Header, NinjaAPI, Path, Query, Router, Schema, Status
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import HttpBearer, django_auth

from audit.services import audit_record
from jobs.api import schema as api_schema
from jobs.api.docs import VendoredSwagger
from jobs.api.schema import ExportFilters, JobFilters, refusals, request_object
from jobs.models import Job
from jobs.selectors import access
from jobs.selectors import jobs as selectors
from jobs.selectors.history_export import history_export_response
from jobs.services import idempotency, specs
from jobs.services import jobs as services
from jobs.services.pins import pin_of
from omlpy_dashboard.outage import DATABASE_ERRORS, database_unavailable
from omlpy_dashboard.refusals import body_too_large_message

# The largest id the database stores (64-bit); a bigger number is refused as invalid, not sent to the database.
MAX_ID = specs.MAX_ID


# What a read-only token may still do.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class BearerToken(HttpBearer):
    """`Authorization: Bearer <personal API token>`: an expired token answers 401 saying so, and a read-only
    token is refused every write of the API (403), whichever endpoint it is."""

    def authenticate(self, request: HttpRequest, token: str):
        from accounts.tokens import token_lookup

        auth = token_lookup(token)
        if auth is None:
            return None
        if auth.expired:
            raise HttpError(
                401,
                f"This API token expired on {auth.expires_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC. "
                "Create a new one at /account/tokens/.",
            )
        if auth.read_only and request.method not in READ_METHODS:
            raise HttpError(
                403,
                "This API token is read-only: it may not submit, cancel or change anything. Use a read-write token.",
            )
        request.user = auth.user
        return auth.user


class JobsAPI(NinjaAPI):
    """The API, whose document also carries the schemas the job request refers to (jobs.api.schema)."""

    def get_openapi_schema(self, **kwargs: Any):
        document = super().get_openapi_schema(**kwargs)
        document["components"].setdefault("schemas", {}).update(api_schema.components())
        return document


api = JobsAPI(
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
    """400 with a message per field; 404 when all that is wrong is a reference to something that does not exist."""
    if not hasattr(exc, "error_dict"):
        return api.create_response(
            request, {"detail": "The request is not valid.", "errors": {"__all__": exc.messages}}, status=400
        )
    missing = all(error.code == "not_found" for errors in exc.error_dict.values() for error in errors)
    detail = " ".join(exc.messages) if missing else "The request is not valid."
    return api.create_response(request, {"detail": detail, "errors": exc.message_dict}, status=404 if missing else 400)


@api.exception_handler(RequestDataTooBig)
def _too_large(request, exc: RequestDataTooBig):
    return api.create_response(request, {"detail": body_too_large_message()}, status=413)


@api.exception_handler(NinjaValidationError)
def _malformed(request, exc: NinjaValidationError):
    errors: dict[str, list[str]] = {}
    # `filters` is the job list's query model, which ninja names for the members of a list; positions in a
    # list are left out too, so that the message is under the parameter's own name.
    skipped = ("body", "query", "path", "payload", "filters")
    for error in exc.errors:
        location = [part for part in error.get("loc", ()) if isinstance(part, str) and part not in skipped]
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        errors.setdefault(".".join(location) or "__all__", []).append(message)
    return api.create_response(request, {"detail": "The request is not valid.", "errors": errors}, status=400)


@api.exception_handler(Http404)
def _not_found(request, exc):
    return api.create_response(request, {"detail": "Not found."}, status=404)


@api.exception_handler(PermissionDenied)
def _forbidden(request, exc):
    return api.create_response(request, {"detail": str(exc) or "Not allowed."}, status=403)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    return api.create_response(
        request, {"detail": "Authentication required: a Bearer API token or a signed-in session."}, status=401
    )


# The database is down: 503 with Retry-After, as for pages (the API's own handlers see these errors first).
for _database_error in DATABASE_ERRORS:
    api.add_exception_handler(_database_error, database_unavailable)


# --- Schemas ------------------------------------------------------------------------------------


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


class PinOut(Schema):
    pinned_by: str
    pinned_at: datetime
    reason: str


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
    result_purged_at: datetime | None = None
    pin: PinOut | None = None
    result: ResultInfo | None = None
    transitions: list[TransitionOut] | None = None


class JobPage(Schema):
    items: list[JobOut]
    next_cursor: str | None
    prev_cursor: str | None = None


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
        "result_purged_at": job.result_purged_at,
    }
    if detail:
        pin = pin_of(job)
        data["pin"] = (
            {"pinned_by": pin.pinned_by_username, "pinned_at": pin.pinned_at, "reason": pin.reason} if pin else None
        )
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


@jobs_router.post(
    "",
    response={200: JobOut, 201: JobOut, **refusals(400, 403, 404, 413, 422)},
    summary="Submit a job",
    description="Checked by the same rules and limits as the compose form. 404: the connection named does not "
    "exist. 413: the body is larger than the server takes. 422: the Idempotency-Key was used for another request.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": api_schema.job_request_schema()}},
        }
    },
)
def create_job(
    request,
    idempotency_key: str | None = Header(
        None, alias="Idempotency-Key", pattern=r"^[\x21-\x7e]{1,255}$", description=IDEMPOTENCY_KEY_HELP
    ),
):
    refusal = access.submit_refusal(request.user)
    if refusal is not None:
        raise HttpError(403, refusal)
    data = request_object(request)
    if idempotency_key is not None:
        try:
            job, created = idempotency.job_create_once(
                owner=request.user, key=idempotency_key, data=data, request=request
            )
        except idempotency.IdempotencyKeyReusedError as exc:
            raise HttpError(422, str(exc)) from None
        return Status(201 if created else 200, _job_out(job))
    spec = services.parse_job_request(data, user=request.user)
    # The created instance already holds its owner and connection and has no parent: no need to read it back.
    return Status(201, _job_out(services.job_create(owner=request.user, spec=spec, request=request)))


@jobs_router.get(
    "/export",
    response=refusals(400),
    summary="The job list as CSV: every job of these filters, in this order, streamed",
    description="The history page's export: the list's filters and sort, without paging. Text cells a "
    "spreadsheet would run are prefixed with `'`; times are UTC (ISO 8601). Each export is audited.",
    openapi_extra={
        "responses": {
            200: {
                "description": "The jobs as CSV, with a header row",
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }
        }
    },
)
def export_jobs(request, filters: Query[ExportFilters]):
    return history_export_response(request, filters.history(), sort=filters.sort, via="api")


@jobs_router.get(
    "", response={200: JobPage, **refusals(400)}, summary="List jobs, newest first unless sorted (keyset pages)"
)
def list_jobs(request, filters: Query[JobFilters]):
    try:
        page = selectors.job_history_sorted(
            request.user,
            filters.history(),
            sort=filters.sort,
            cursor=filters.cursor,
            before=None if filters.cursor else filters.before,
            limit=filters.limit,
            rows=False,
        )
    except ValueError as exc:
        raise HttpError(400, str(exc)) from None
    return {
        "items": [_job_out(job) for job in page.items],
        "next_cursor": page.next_cursor,
        "prev_cursor": page.prev_cursor,
    }


@jobs_router.get("/{job_id}", response={200: JobOut, **refusals(400, 404)}, summary="One job with its transitions")
def get_job(request, job_id: UUID):
    return _job_out(access.job_for_user(request.user, job_id), detail=True)


@jobs_router.get(
    "/{job_id}/result",
    response=refusals(400, 404),
    summary="The result body exactly as OML sent it",
    openapi_extra={
        "responses": {
            "200": {
                "description": "The body as received, with the content type OML gave it (JSON for OML's own).",
                "headers": {
                    "X-Result-SHA256": {
                        "description": "SHA-256 of the body, in hexadecimal.",
                        "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    }
                },
                "content": {"application/json": {"schema": {}}, "*/*": {"schema": {}}},
            }
        }
    },
)
def get_result(request, job_id: UUID):
    job = access.job_for_user(request.user, job_id)
    result = getattr(job, "result", None) if hasattr(job, "result") else None
    if result is None and job.result_purged_at:
        raise HttpError(410, "This job's result was removed by retention; the job's record is kept.")
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


@jobs_router.post(
    "/{job_id}/cancel",
    response={200: JobOut, **refusals(400, 403, 404, 409)},
    summary="Cancel a job that has not ended",
)
def cancel_job(request, job_id: UUID):
    job = _modifiable(request, job_id)
    if not services.job_cancel(job=job, actor=request.user, request=request):
        raise HttpError(409, f"The job has already ended ({job.state}).")
    return _job_out(access.job_for_user(request.user, job_id))


@jobs_router.post(
    "/{job_id}/rerun", response={201: JobOut, **refusals(400, 403, 404)}, summary="Run the same request again"
)
def rerun_job(request, job_id: UUID):
    job = _modifiable(request, job_id)
    new = services.job_rerun(job=job, actor=request.user, request=request)
    return Status(201, _job_out(Job.objects.select_related("owner", "connection", "parent").get(pk=new.pk)))


# --- Connections --------------------------------------------------------------------------------

connections_router = Router(tags=["connections"])


@connections_router.get(
    "", response={200: list[ConnectionOut], **refusals()}, summary="The connections granted to your teams"
)
def list_connections(request):
    return list(access.visible_connections(request.user))


@connections_router.get(
    "/{connection_id}/scripts",
    response={200: list[ScriptOut], **refusals(400, 404, 502)},
    summary="Scripts on that service",
)
def list_scripts(request, connection_id: int = Path(..., ge=1, le=MAX_ID)):
    connection = access.connection_for_user(request.user, connection_id)
    try:
        return selectors.scripts_for_picker(connection)
    except selectors.ScriptListUnavailable as exc:
        raise HttpError(502, f"OML did not list its scripts: {exc}") from None


api.add_router("/jobs", jobs_router)
api.add_router("/connections", connections_router)


# Operations for scripts and the command line, and pins; imported last, as they use the schemas above.
from jobs.api.extra import jobs_extra_router, whoami_router  # noqa: E402
from jobs.api.pins import pins_router  # noqa: E402

api.add_router("/jobs", jobs_extra_router)
api.add_router("/jobs", pins_router)
api.add_router("/whoami", whoami_router)
