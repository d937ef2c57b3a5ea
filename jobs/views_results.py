"""Pages and downloads of results, the job comparison, and timing analytics. Thin: the work is in
jobs.results, jobs.results_export, jobs.results_compare and jobs.analytics."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from . import analytics, results
from .access import job_for_user
from .audit import audit_record
from .forms import HistoryFilterForm
from .models import JobResult
from .results_compare import compare_requests, compare_results, compare_timing
from .results_export import download_response
from .selectors import job_history_queryset

ROWS_PER_PAGE = 200
TREE_ENTRIES_PER_PAGE = 100
GRAPHICS_PER_PAGE = 10
RAW_PAGE_BYTES = 256 * 1024


def _page_number(request) -> int:
    try:
        return max(1, int(request.GET.get("page", "1")))
    except ValueError:
        return 1


def _stored_result(job) -> JobResult | None:
    return JobResult.objects.filter(job=job).first()


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
        raise Http404("No result stored.")
    raw = results.raw_page(results.result_source(result), _page_number(request), RAW_PAGE_BYTES)
    _audit(request, job, "result_view", "raw")
    return render(request, "jobs/result_raw.html", {"job": job, "result": result, "raw": raw})


@login_required
@require_GET
def result_download(request, job_uuid, fmt: str):
    job = job_for_user(request.user, job_uuid)
    result = _stored_result(job)
    if result is None:
        raise Http404("No result stored.")
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
    form = HistoryFilterForm(request.GET)
    return form, job_history_queryset(request.user, form.filters())


@login_required
@require_GET
def analytics_page(request):
    form, jobs = _filtered_jobs(request)
    outcome_days = analytics.outcomes(jobs)
    origin, bars = analytics.gantt(jobs)
    context = {
        "form": form,
        "query": request.GET.urlencode(),
        "trend": analytics.duration_trend(jobs),
        "phases": analytics.phase_split(jobs),
        "outcomes": outcome_days,
        "totals": analytics.outcome_totals(outcome_days),
        "overall_failure_rate": analytics.failure_rate(analytics.outcome_totals(outcome_days)),
        "gantt_origin": origin,
        "gantt": bars,
        "gantt_limit": analytics.GANTT_MAX_JOBS,
        "states": analytics.STATE_ORDER,
    }
    return render(request, "analytics/index.html", context)


@login_required
@require_GET
def analytics_data(request, chart: str):
    _, jobs = _filtered_jobs(request)
    if chart == "trend":
        data = analytics.trend_json(analytics.duration_trend(jobs))
    elif chart == "phases":
        data = analytics.phases_json(analytics.phase_split(jobs))
    elif chart == "outcomes":
        data = analytics.outcomes_json(analytics.outcomes(jobs))
    else:
        data = analytics.gantt_json(*analytics.gantt(jobs))
    return JsonResponse(data)
