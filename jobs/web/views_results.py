"""Pages and downloads of results, the job comparison, and timing analytics. Thin: the work is in
jobs.results.bodies, jobs.results.export, jobs.results.compare and jobs.selectors.analytics."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseGone, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from audit.services import audit_record
from jobs.models import JobResult
from jobs.results import bodies as results
from jobs.results.compare import compare_requests, compare_results, compare_timing
from jobs.results.export import download_response
from jobs.selectors import analytics
from jobs.selectors.access import job_for_user
from jobs.selectors.jobs import job_history_queryset
from jobs.services.rollups import rollups_for
from jobs.web.forms import HistoryFilterForm
from omlpy_dashboard.refusals import refusal_page

ROWS_PER_PAGE = 200
TREE_ENTRIES_PER_PAGE = 100
GRAPHICS_PER_PAGE = 10
RAW_PAGE_BYTES = 256 * 1024
# Far beyond any stored result, and small enough that the offset it makes is a number islice takes.
MAX_PAGE_NUMBER = 1_000_000


def _page_number(request) -> int | None:
    """The page asked for: 1 when `page` is absent or not a whole number, None when it is past MAX_PAGE_NUMBER."""
    text = request.GET.get("page", "1").strip()
    if not (text.isascii() and text.isdigit()):
        return 1
    # int() of thousands of digits is refused by Python itself; anything that long is out of range anyway.
    if len(text) > len(str(MAX_PAGE_NUMBER)) or int(text) > MAX_PAGE_NUMBER:
        return None
    return max(1, int(text))


def _page_refused(request):
    return refusal_page(request, f"page: the page number must be from 1 to {MAX_PAGE_NUMBER}.")


def _stored_result(job) -> JobResult | None:
    return JobResult.objects.filter(job=job).first()


def _no_result(job):
    """410 Gone for a result that retention removed; 404 for one that never was."""
    if job.result_purged_at:
        return HttpResponseGone(
            "This job's result was removed by retention; the job's record is kept.", content_type="text/plain"
        )
    raise Http404("No result stored.")


def _audit(request, job, action: str, fmt: str) -> None:
    audit_record(action=action, request=request, target_type="job", target_id=str(job.uuid), details={"format": fmt})


@login_required
@require_GET
def result_view(request, job_uuid):
    job = job_for_user(request.user, job_uuid)
    result = _stored_result(job)
    context = {"job": job, "result": result}
    if result is not None:
        shape = results.shape_of(result)
        source = results.result_source(result)
        number = _page_number(request)
        if number is None:
            return _page_refused(request)
        context["shape"] = shape
        if shape == results.GRAPHICS:
            context["graphics"] = results.graphics_page(source, number, GRAPHICS_PER_PAGE)
        elif shape in (results.OBJECT, results.SCALAR):
            context["tree"] = results.tree_page(source, number, TREE_ENTRIES_PER_PAGE)
        elif shape == results.TEXT:
            context["raw"] = results.raw_page(source, number, RAW_PAGE_BYTES)
        else:
            context["table"] = results.row_page(source, shape, number, ROWS_PER_PAGE)
        _audit(request, job, "result_view", "html")
    return render(request, "jobs/result.html", context)


@login_required
@require_GET
def result_raw(request, job_uuid):
    job = job_for_user(request.user, job_uuid)
    result = _stored_result(job)
    if result is None:
        return _no_result(job)
    number = _page_number(request)
    if number is None:
        return _page_refused(request)
    raw = results.raw_page(results.result_source(result), number, RAW_PAGE_BYTES)
    _audit(request, job, "result_view", "raw")
    return render(request, "jobs/result_raw.html", {"job": job, "result": result, "raw": raw})


@login_required
@require_GET
def result_download(request, job_uuid, fmt: str):
    job = job_for_user(request.user, job_uuid)
    result = _stored_result(job)
    if result is None:
        return _no_result(job)
    response = download_response(job, result, fmt)
    _audit(request, job, "result_download", fmt)
    return response


@login_required
@require_GET
def compare(request):
    picked = request.GET.getlist("pick")
    a_id = request.GET.get("a") or (picked[0] if picked else "")
    b_id = request.GET.get("b") or (picked[1] if len(picked) > 1 else "")
    a = job_for_user(request.user, a_id)
    b = job_for_user(request.user, b_id)
    result_a, result_b = _stored_result(a), _stored_result(b)
    context = {
        "a": a,
        "b": b,
        "requests": compare_requests(a, b),
        "timing": compare_timing(a, b),
        "results": compare_results(result_a, result_b) if result_a and result_b else None,
        "result_a": result_a,
        "result_b": result_b,
    }
    return render(request, "jobs/compare.html", context)


def _filtered_jobs(request):
    """The jobs of the filters, and their rollups, which the figures are read from; None for a search or
    "pinned only", which the rows answer (a rollup knows neither a job's id nor its pin)."""
    form = HistoryFilterForm(request.GET, user=request.user)
    filters = form.filters()
    rollups = None if filters.search or filters.pinned else rollups_for(request.user, filters)
    return form, job_history_queryset(request.user, filters), rollups


@login_required
@require_GET
def analytics_page(request):
    """The page's shell: the filters and the definitions. Each chart and its table are drawn from their JSON
    endpoint (analytics_data), so that every figure is computed once per view (bench/history.py)."""
    form = HistoryFilterForm(request.GET, user=request.user)
    context = {
        "form": form,
        "query": request.GET.urlencode(),
        "exact_max": analytics.EXACT_MAX,
        "zone_name": timezone.get_current_timezone_name(),
        "gantt_limit": analytics.GANTT_MAX_JOBS,
        "states": analytics.STATE_ORDER,
    }
    return render(request, "analytics/index.html", context, status=400 if form.errors else 200)


@login_required
@require_GET
def analytics_data(request, chart: str):
    form, jobs, purged = _filtered_jobs(request)
    if form.errors:
        errors = {name: list(messages) for name, messages in form.errors.items()}
        return JsonResponse({"detail": "The filters are not valid.", "errors": errors}, status=400)
    if chart == "trend":
        data = analytics.trend_json(*analytics.trend_figures(jobs, purged))
    elif chart == "phases":
        data = analytics.phases_json(analytics.phase_split(jobs, purged))
    elif chart == "outcomes":
        data = analytics.outcomes_json(analytics.outcomes(jobs, purged))
    else:
        data = analytics.gantt_json(*analytics.gantt(jobs))
    return JsonResponse(data)
