"""OML's endpoints. Thin: validate, call a service or the executor, answer OML's status, headers and JSON.

JSON views without CSRF or sessions: callers authenticate with the Bearer token of the token endpoint.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from omlpy_dashboard.client_address import client_address

from . import auth, execution, faults, inputs, jsonbody, services
from .errors import ENGINE_FAILURE, INVALID_REQUEST, JOB_NOT_FOUND, EngineError
from .models import EngineJob
from .protocol import parse_execution
from .selectors import script_for_call, scripts_visible

State = EngineJob.State
View = Callable[..., HttpResponse]


def _error(exc: EngineError) -> JsonResponse:
    response = JsonResponse(exc.body(), status=exc.status)
    if exc.retry_after is not None:
        response["Retry-After"] = str(exc.retry_after)
    return response


def _result(text: str) -> HttpResponse:
    """200 with the result's JSON text wrapped as OML does, without parsing it again."""
    return HttpResponse(f'{{"result":{text}}}', content_type="application/json")


def endpoint(*methods: str) -> Callable[[View], View]:
    """An OML endpoint: allowed methods, injected faults (when configured), Bearer auth, JSON errors."""

    def decorate(view: View) -> View:
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            if request.method not in methods:
                return _error(EngineError(405, INVALID_REQUEST, f"Method {request.method} is not allowed here."))
            injected = faults.configured()
            fault = faults.before(injected, request.path)
            if fault is not None:
                return fault
            try:
                response = view(request, auth.authenticate(request), *args, **kwargs)
            except EngineError as exc:
                response = _error(exc)
            except RequestDataTooBig:
                response = _error(jsonbody.too_large())
            return faults.after(injected, response)

        return wrapper

    return decorate


@csrf_exempt
def token(request: HttpRequest) -> HttpResponse:
    """POST a password or refresh grant; 200 with accessToken, expiresIn and tokenType."""
    if request.method != "POST":
        return _error(EngineError(405, INVALID_REQUEST, "Use POST."))
    try:
        return JsonResponse(auth.grant(jsonbody.object_from(request.body), client=client_address(request)))
    except RequestDataTooBig:
        return _error(jsonbody.too_large())
    except EngineError as exc:
        return _error(exc)


@endpoint("GET")
def scripts(request: HttpRequest, user: str, version: str) -> HttpResponse:
    listed = [
        {
            "name": script.name,
            "owner": script.owner,
            "description": script.description,
            "date": script.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "global": script.is_global,
            "script": script.source,
        }
        for script in scripts_visible(user=user)
    ]
    return JsonResponse({"result": listed})


@endpoint("GET")
def envs(request: HttpRequest, user: str, version: str) -> HttpResponse:
    """The engine runs every script in its own Python environment: there are no conda environments to list."""
    return JsonResponse({"result": {"envs": []}})


@endpoint("POST")
def execute(
    request: HttpRequest, user: str, version: str, kind: str, script: str, owner: str | None = None
) -> HttpResponse:
    """Run now (200 with the result) or queue an async job (201 with Location)."""
    call = parse_execution(kind, version, request.body)
    found = script_for_call(user=user, name=script, owner=owner)
    if call.input:
        inputs.check_read_only(call.input)
    if call.async_flag:
        job = services.job_create(
            owner=user,
            api_version=version,
            execution=call,
            script=found,
            timer_scripts=settings.OMLENGINE_TIMER_SCRIPTS,
        )
        response = HttpResponse(status=201)
        response["Location"] = request.build_absolute_uri(reverse("omlengine-job", args=[version, job.pk]))
        return response
    services.call_record(owner=user, api_version=version, execution=call, script=found)
    return _result(execution.run(script=found, execution=call, wall_seconds=settings.OMLENGINE_WALL_SECONDS))


@endpoint("GET", "DELETE")
def job(request: HttpRequest, user: str, version: str, job_id: str) -> HttpResponse:
    """Status: 202 with progress while pending, 302 with Content-Location once finished. DELETE stops it."""
    if request.method == "DELETE":
        if not services.job_delete(job_id=_job_uuid(job_id), owner=user):
            raise _job_not_found(job_id)
        return JsonResponse({"result": "job deleted successfully"})
    found = services.job_status(job_id=_job_uuid(job_id), owner=user)
    if found is None:
        raise _job_not_found(job_id)
    if found.state in (State.SUCCEEDED, State.FAILED):
        response = HttpResponse(status=302)
        response["Content-Location"] = request.build_absolute_uri(
            reverse("omlengine-job-result", args=[version, found.pk])
        )
        return response
    elapsed = int((timezone.now() - found.created_at).total_seconds())
    return JsonResponse(
        {
            "createdDate": found.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "status": "job is still running",
            "elapsedTime": _hh_mm_ss(elapsed),
        },
        status=202,
    )


@endpoint("GET")
def job_result(request: HttpRequest, user: str, version: str, job_id: str) -> HttpResponse:
    """200 with the result, 404 while not ready, or the failed job's error answer."""
    found = services.job_observe(job_id=_job_uuid(job_id), owner=user, count_status_request=False)
    if found is None:
        raise _job_not_found(job_id)
    if found.state == State.SUCCEEDED:
        return _result(found.result)
    if found.state == State.FAILED:
        raise EngineError(found.error_status or 500, found.error_code or ENGINE_FAILURE, found.error_message)
    return JsonResponse({"status": "job is still running"}, status=404)


def _job_uuid(job_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(job_id)
    except ValueError:
        return None


def _job_not_found(job_id: str) -> EngineError:
    return EngineError(500, JOB_NOT_FOUND, f"job not found: {job_id}")


def _hh_mm_ss(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
