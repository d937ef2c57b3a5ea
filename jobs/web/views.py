"""The analysts' pages: history, compose (and clone), the job page with its live timeline, cancel and re-run.

Views are thin: access through jobs.selectors.access, reads through jobs.selectors.jobs, writes through
jobs.services.jobs, and every job request is validated by jobs.services.specs.parse_job_request, exactly as the JSON API
does.
"""

from __future__ import annotations

import contextlib
import json
import shlex

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from jobs.models import Connection, Job, JobResult
from jobs.selectors.access import (
    ConnectionDenied,
    can_modify,
    can_pin,
    can_submit,
    connection_for_user,
    job_for_user,
    submit_refusal,
    usable_connections,
    visible_connection_ids,
    visible_jobs,
)
from jobs.selectors.history_export import history_export_response
from jobs.selectors.jobs import (
    DEFAULT_WINDOW,
    ScriptListUnavailable,
    job_durations,
    job_history_sorted,
    job_timeline,
    jobs_by_uuids,
    scripts_for_picker,
)
from jobs.selectors.timing import oml_bounds
from jobs.services.jobs import job_cancel, job_create, job_rerun, result_read_all
from jobs.services.pins import pin_of
from jobs.services.specs import HELP, parse_job_request, spec_as_request
from jobs.states import JobKind, ServiceLevel
from jobs.web.forms import (
    HistoryFilterForm,
    compose_fields,
    form_values,
    initial_from_request,
    job_request_data,
    parse_uuids,
)
from jobs.worker.polling import poll_log_rows
from omlpy_dashboard.refusals import refusal_page

# htmx stops polling an element whose request answers 286.
STOP_POLLING = 286
HISTORY_PAGE_SIZE = 50
# The job page previews results up to this size; bigger ones are for the result viewer.
PREVIEW_MAX_BYTES = 512 * 1024
PREVIEW_ROWS = 20
# The job page lists at most this many re-runs and clones of a job.
CHILDREN_SHOWN = 10


@login_required
def home(request):
    return redirect("jobs:history")


# --- History --------------------------------------------------------------------------------------


@login_required
@require_GET
def history(request):
    form = HistoryFilterForm(request.GET or None, user=request.user)
    filters = form.filters()
    sort = form.sort_order()
    cursor = request.GET.get("after") or None
    before = None if cursor else (request.GET.get("before") or None)
    try:
        page = job_history_sorted(
            request.user, filters, sort=sort, cursor=cursor, before=before, limit=HISTORY_PAGE_SIZE
        )
    except ValueError:
        messages.warning(request, "That page link is no longer valid; here is the first page.")
        cursor = before = None
        page = job_history_sorted(request.user, filters, sort=sort, limit=HISTORY_PAGE_SIZE)
    next_url = _page_url(request, "after", page.next_cursor)
    prev_url = _page_url(request, "before", page.prev_cursor)
    has_range = filters.created_from is not None or filters.created_to is not None
    context = {
        "form": form,
        "connection_choices": form.connection_choices(),
        "state_chips": form.chips("state"),
        "kind_chips": form.chips("kind"),
        "page": page,
        "jobs": page.items,
        "active_ids": [str(job.uuid) for job in page.items if not job.is_terminal],
        "next_url": next_url,
        "prev_url": prev_url,
        "page_labels": HISTORY_PAGE_LABELS[sort],
        "first_page": cursor is None and before is None,
        "export_url": f"{reverse('jobs:history_export')}?{_without_paging(request)}",
        "sort": sort,
        "default_window": not has_range and not filters.search,
        "window_days": DEFAULT_WINDOW.days,
        "filtered": form.is_filtered(),
        "more_filters": form.more_filters_in_use(),
        "may_submit": can_submit(request.user),
    }
    # Filters that are not valid are named above the list (which then shows the unfiltered history).
    return render(request, "jobs/history.html", context, status=400 if form.errors else 200)


@login_required
@require_GET
def history_export(request):
    """The history page's jobs as CSV: the same query string, filters, sort and visibility, every page of it."""
    form = HistoryFilterForm(request.GET or None, user=request.user)
    if form.errors:
        return refusal_page(request, "; ".join(f"{name}: {' '.join(errs)}" for name, errs in form.errors.items()))
    return history_export_response(request, form.filters(), sort=form.sort_order(), via="page")


# The pager's links per sort: (towards the first page, towards the last).
HISTORY_PAGE_LABELS = {
    "newest": ("Newer jobs", "Older jobs"),
    "oldest": ("Older jobs", "Newer jobs"),
    "longest": ("Longer jobs", "Shorter jobs"),
}


def _without_paging(request) -> str:
    query = request.GET.copy()
    query.pop("after", None)
    query.pop("before", None)
    return query.urlencode()


def _page_url(request, name: str, cursor: str | None) -> str | None:
    """The page's own query string with `name` set to `cursor` (and the other direction's cursor dropped)."""
    if not cursor:
        return None
    query = request.GET.copy()
    query.pop("after", None)
    query.pop("before", None)
    query[name] = cursor
    return f"?{query.urlencode()}"


@login_required
@require_GET
def history_rows(request):
    """The rows of the history page's unfinished jobs, swapped in place; 286 once all of them have ended."""
    jobs = jobs_by_uuids(request.user, parse_uuids(request.GET.getlist("id")))
    active_ids = [str(job.uuid) for job in jobs if not job.is_terminal]
    response = render(request, "jobs/_history_rows.html", {"jobs": jobs, "active_ids": active_ids})
    if not active_ids:
        response.status_code = STOP_POLLING
    return response


# --- Compose --------------------------------------------------------------------------------------


def _compose(request, *, parent: Job | None, initial: dict, action_url: str):
    if not can_submit(request.user):
        raise PermissionDenied("Your role is read-only: auditors review jobs but do not submit them.")
    refusal = submit_refusal(request.user)
    if refusal is not None:
        # Signed in and not read-only, but no connection is granted to them: say why rather than show a form
        # that cannot work.
        return render(request, "jobs/compose.html", {"parent": parent, "refusal": refusal}, status=403)
    errors: dict[str, list[str]] = {}
    values = initial
    if request.method == "POST":
        try:
            # A connection the user may not use raises ConnectionDenied: a 403 that does not describe it.
            spec = parse_job_request(job_request_data(request.POST), form=True, user=request.user)
        except ValidationError as exc:
            errors = exc.message_dict
            values = form_values(request.POST)
        else:
            action = "clone" if parent is not None else "submit"
            job = job_create(owner=request.user, spec=spec, parent=parent, request=request, action=action)
            # No "is queued" message: it would stay above the job as it moved on. The live part of the job
            # page says where the job stands.
            return redirect("jobs:detail", job_uuid=job.uuid)
    connections = list(usable_connections(request.user))
    if not values.get("connection") or not any(str(c.pk) == str(values["connection"]) for c in connections):
        # The default is preselected only where the user may use it; else the only one, else none.
        default = next((c for c in connections if c.is_default), connections[0] if len(connections) == 1 else None)
        values = {**values, "connection": str(default.pk) if default else ""}
    context = {
        "parent": parent,
        "action_url": action_url,
        "values": values,
        "errors": errors,
        "other_errors": {name: msgs for name, msgs in errors.items() if name not in _DRAWN_FIELDS},
        "fields": compose_fields(values, errors),
        "connections": connections,
        "kinds": JobKind.choices,
        "services": ServiceLevel.choices,
        "kind_fields_json": _kind_fields_json(),
        "help": HELP,
    }
    return render(request, "jobs/compose.html", context, status=400 if errors else 200)


_DRAWN_FIELDS = frozenset(
    {"connection", "kind", "script", "script_owner"}
    | {"input", "parameters", "rows", "groupBy", "orderBy", "times", "parallelFlag", "parallel"}
    | {"service", "asyncFlag", "timeout", "graphicsFlag", "envName"}
)


def _kind_fields_json() -> str:
    from jobs.services.specs import COMMON_FIELDS, KIND_FIELDS, REQUIRED_FIELDS

    return json.dumps(
        {
            "fields": {kind: sorted(KIND_FIELDS[kind] | COMMON_FIELDS) for kind in JobKind.values},
            "required": {kind: sorted(REQUIRED_FIELDS[kind]) for kind in JobKind.values},
        }
    )


@login_required
@require_http_methods(["GET", "POST"])
def compose(request):
    initial = {"kind": JobKind.DO_EVAL, "asyncFlag": True}
    return _compose(request, parent=None, initial=initial, action_url=reverse("jobs:compose"))


@login_required
@require_http_methods(["GET", "POST"])
def clone(request, job_uuid):
    parent = job_for_user(request.user, job_uuid)
    initial = initial_from_request(spec_as_request(parent))
    return _compose(
        request, parent=parent, initial=initial, action_url=reverse("jobs:clone", kwargs={"job_uuid": parent.uuid})
    )


@login_required
@require_GET
def compose_scripts(request):
    """The script picker for a connection: its script list from OML, or a free-text field when OML cannot say."""
    connection = _connection_or_default(request.user, request.GET.get("connection"))
    context = {"connection": connection, "selected": request.GET.get("script", ""), "scripts": [], "error": ""}
    if connection is None:
        ids = visible_connection_ids(request.user)
        context["error"] = (
            "Choose a connection to list its scripts."
            if ids is None or ids
            else "No connection is granted to you. Ask an administrator to grant one to your team."
        )
    else:
        scripts, context["error"] = _list_scripts(connection)
        # Benchmark-only scripts are not offered (unless this form already names one: a clone of such a job).
        hidden = set(settings.SCRIPT_PICKER_HIDDEN) - {context["selected"]}
        context["scripts"] = [script for script in scripts if script.get("name") not in hidden]
    response = render(request, "jobs/_scripts.html", context | {"help": HELP})
    # The preview listens for this to show the request with the picked script.
    response["HX-Trigger-After-Settle"] = "scripts-loaded"
    return response


def _connection_or_default(user, value) -> Connection | None:
    """The connection asked for (Http404 unless the user may see it), else the default if the user may see it."""
    if value and str(value).isdigit():
        return connection_for_user(user, value)
    ids = visible_connection_ids(user)
    default = Connection.objects.filter(is_default=True).first()
    return default if default is not None and (ids is None or default.pk in ids) else None


def _list_scripts(connection: Connection) -> tuple[list[dict], str]:
    try:
        scripts = scripts_for_picker(connection)
    except ScriptListUnavailable as exc:
        return [], f"Could not list the scripts of {connection.name}: {exc}. Type the script's name instead."
    return sorted(scripts, key=lambda s: (s.get("name", "").lower(), s.get("owner", ""))), ""


@login_required
@require_POST
def compose_preview(request):
    """The exact HTTP request the form would send, as a copyable curl line (the token redacted)."""
    errors: dict[str, list[str]] = {}
    preview = None
    try:
        spec = parse_job_request(job_request_data(request.POST), form=True, user=request.user)
    except ValidationError as exc:
        errors = exc.message_dict
    except ConnectionDenied as exc:
        errors = {"connection": [str(exc)]}
    else:
        preview = request_preview(Job(**spec.model_fields()))
    # A fragment of the compose page, refreshed as the analyst types: an incomplete request is its normal state,
    # so its problems are the preview (200), not a failed request the browser would report as an error.
    return render(request, "jobs/_preview.html", {"preview": preview, "errors": errors})


def request_preview(job: Job) -> dict:
    """Method, URL, headers and body of the POST that submits `job` to OML; the token shown as <token>."""
    url = job.oml_url()
    body = job.oml_body()
    compact = json.dumps(body, separators=(",", ":"))
    headers = [("Authorization", "Bearer <token>"), ("Content-Type", "application/json")]
    curl = " ".join(
        ["curl", "-i", "-X", "POST", shlex.quote(url)]
        + [f"-H {shlex.quote(f'{name}: {value}')}" for name, value in headers]
        + ["-d", shlex.quote(compact)]
    )
    return {
        "method": "POST",
        "url": url,
        "headers": headers,
        "body": json.dumps(body, indent=2),
        "curl": curl,
    }


# --- The job page ---------------------------------------------------------------------------------


@login_required
@require_GET
def detail(request, job_uuid):
    job = job_for_user(request.user, job_uuid)
    context = _job_context(request, job)
    context["request_preview"] = request_preview(job)
    return render(request, "jobs/detail.html", context)


@login_required
@require_GET
def detail_live(request, job_uuid):
    """The live part of the job page; 286 once the job has ended, so that the page stops polling."""
    job = job_for_user(request.user, job_uuid)
    response = render(request, "jobs/_job_live.html", _job_context(request, job))
    if job.is_terminal:
        response.status_code = STOP_POLLING
    return response


def _job_context(request, job: Job) -> dict:
    transitions = job_timeline(job)
    previous = job.created_at
    timeline = []
    for step in transitions:
        timeline.append({"step": step, "since_previous": (step.at - previous).total_seconds()})
        previous = step.at
    durations = job_durations(job)
    result = JobResult.objects.filter(job=job).first() if job.state == "succeeded" else None
    first_polls, last_polls, polls_dropped = poll_log_rows(job.poll_log)
    # Re-runs and clones of this job, newest first: part of the live fragment, so one made meanwhile shows up.
    children = list(visible_jobs(request.user).filter(parent=job).order_by("-created_at", "-id")[: CHILDREN_SHOWN + 1])
    return {
        "job": job,
        "bounds": oml_bounds(job),
        "first_polls": first_polls,
        "last_polls": last_polls,
        "polls_dropped": polls_dropped,
        "children": children[:CHILDREN_SHOWN],
        "more_children": len(children) > CHILDREN_SHOWN,
        "timeline": timeline,
        "durations": durations,
        "bar": _duration_bar(durations),
        "result": result,
        "preview": _result_preview(result) if result else None,
        "may_modify": can_modify(request.user, job),
        "pin": pin_of(job),
        "may_pin": can_pin(request.user, job),
        "may_submit": can_submit(request.user),
        # Poll fast while a job is young, slower once it has been running a while.
        "poll_every": "1s" if (durations.get("running") or 0) < 120 else "3s",
    }


def _duration_bar(durations: dict) -> list[dict]:
    """Segments of the queue wait / OML time / fetch time bar, as SVG x and width in percent."""
    parts = [(name, durations.get(name)) for name in ("queue", "oml", "lag", "fetch")]
    known = [(name, seconds) for name, seconds in parts if seconds is not None]
    total = sum(seconds for _, seconds in known)
    if total <= 0:
        return []
    x = 0.0
    segments = []
    for name, seconds in known:
        width = 100.0 * seconds / total
        segments.append({"name": name, "seconds": seconds, "x": round(x, 3), "width": round(width, 3)})
        x += width
    return segments


def _result_preview(result: JobResult) -> dict:
    """The first rows of a small result as a table; bigger results are left to the result viewer."""
    if result.size_bytes > PREVIEW_MAX_BYTES:
        return {"too_big": True}
    try:
        value = json.loads(result_read_all(result))
    except (ValueError, UnicodeDecodeError):
        return {"unreadable": True}
    if isinstance(value, dict) and set(value) == {"result"}:
        value = value["result"]
    return _tabulate(value)


def _tabulate(value) -> dict:
    columns: list[str] = []
    rows: list[list] = []
    total = None
    images = 0

    def add_column(name: str) -> None:
        if name not in columns:
            columns.append(name)

    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        if all("IMAGE" in item for item in value):
            images = len(value)
            value = _graphics_records(value)
        total = len(value)
        for item in value[:PREVIEW_ROWS]:
            for key in item:
                add_column(str(key))
        rows = [[item.get(column) for column in columns] for item in value[:PREVIEW_ROWS]]
    elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        # group-apply: {label: {COLUMN: {index: value}}}; the label is opaque, shown as the server sent it.
        add_column("group")
        records = []
        for label, frame in value.items():
            indexes: list[str] = []
            for column, cells in frame.items():
                add_column(str(column))
                if isinstance(cells, dict):
                    indexes += [index for index in cells if index not in indexes]
            for index in indexes or [None]:
                record = {"group": label}
                for column, cells in frame.items():
                    record[str(column)] = cells.get(index) if isinstance(cells, dict) else cells
                records.append(record)
        total = len(records)
        rows = [[record.get(column) for column in columns] for record in records[:PREVIEW_ROWS]]
    elif isinstance(value, list):
        columns = ["index", "value"]
        total = len(value)
        rows = [[i, item] for i, item in enumerate(value[:PREVIEW_ROWS], start=1)]
    else:
        return {"scalar": json.dumps(value, indent=2, ensure_ascii=False)}
    cells = [[_cell(cell) for cell in row] for row in rows]
    return {"columns": columns, "rows": cells, "total": total, "shown": len(cells), "images": images}


def _graphics_records(items: list[dict]) -> list[dict]:
    """A graphics result's rows without the images: each image's DATA (the return value as a JSON string) read
    as the value it holds, so that a DataFrame shows as its rows (one per row, under its image's ID)."""
    records: list[dict] = []
    for item in items:
        rest = {key: value for key, value in item.items() if key not in ("IMAGE", "DATA")}
        data = item.get("DATA")
        if isinstance(data, str):
            with contextlib.suppress(ValueError):  # not JSON: shown as the text it is
                data = json.loads(data)
        if isinstance(data, list) and data and all(isinstance(row, dict) for row in data):
            records += [{**rest, **{str(key): cell for key, cell in row.items()}} for row in data]
        elif isinstance(data, dict) and data and all(isinstance(cells, dict) for cells in data.values()):
            # DataFrame.to_dict(): {COLUMN: {index: value}}
            indexes: list[str] = []
            for cells in data.values():
                indexes += [index for index in cells if index not in indexes]
            records += [{**rest, **{str(col): cells.get(index) for col, cells in data.items()}} for index in indexes]
        elif "DATA" in item:
            records.append({**rest, "DATA": data})
        else:
            records.append(rest)
    return records


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


# --- Actions --------------------------------------------------------------------------------------


@login_required
@require_POST
def cancel(request, job_uuid):
    job = job_for_user(request.user, job_uuid)
    if not can_modify(request.user, job):
        raise PermissionDenied("Only the job's owner may cancel it.")
    if job_cancel(job=job, actor=request.user, request=request):
        messages.success(request, "Cancellation requested.")
    else:
        messages.info(request, "The job had already ended; nothing to cancel.")
    return redirect("jobs:detail", job_uuid=job.uuid)


@login_required
@require_POST
def rerun(request, job_uuid):
    job = job_for_user(request.user, job_uuid)
    if not can_modify(request.user, job):
        raise PermissionDenied("Only the job's owner may re-run it.")
    try:
        new_job = job_rerun(job=job, actor=request.user, request=request)
    except ConnectionDenied as exc:
        messages.error(request, f"This job cannot be re-run: {exc}")
        return redirect("jobs:detail", job_uuid=job.uuid)
    except ValidationError as exc:
        detail = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in exc.message_dict.items())
        messages.error(request, f"This job cannot be re-run as it is ({detail}). Clone it and fix the request.")
        return redirect("jobs:detail", job_uuid=job.uuid)
    messages.success(request, f"This is the re-run of job {job.uuid}.")
    return redirect("jobs:detail", job_uuid=new_job.uuid)
