"""The audit pages: the trail, filtered and paged, and its CSV export (auditors and administrators)."""

import csv
import json
from datetime import UTC

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from omlpy_dashboard.spreadsheet import formula_safe

from .access import can_view_audit
from .forms import AuditFilterForm, aware
from .selectors import AuditFilters, audit_iter_all, audit_page


def _audit_filters(request) -> tuple[AuditFilterForm, AuditFilters | None]:
    """The filters of the page and the export alike; None when they do not parse."""
    if not can_view_audit(request.user):
        raise PermissionDenied("Only auditors and administrators may read the audit trail.")
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        return form, None
    data = form.cleaned_data
    filters = AuditFilters(
        actor=data["actor"].strip(),
        action=data["action"],
        target=data["target"].strip(),
        since=aware(data["since"]),
        until=aware(data["until"]),
    )
    return form, filters


@require_GET
@login_required
def audit_list(request):
    form, filters = _audit_filters(request)
    rows, next_cursor = audit_page(request.user, filters, request.GET.get("after")) if filters else ([], None)
    query = filters.as_query() if filters else {}
    context = {"form": form, "rows": rows, "next_cursor": next_cursor, "query": query}
    return render(request, "audit/list.html", context)


class _Echo:
    def write(self, value):
        return value


_CSV_HEADER = ["id", "at_utc", "actor", "action", "ip", "target_type", "target_id", "details", "entry_hash"]


def _csv_cell(value) -> str:
    # A cell a spreadsheet would read as a formula is made inert, by the rule result downloads follow too.
    return formula_safe("" if value is None else str(value))


def _csv_rows(user, filters: AuditFilters):
    writer = csv.writer(_Echo())
    yield writer.writerow(_CSV_HEADER)
    for entry in audit_iter_all(user, filters):
        yield writer.writerow(
            [
                entry.id,
                entry.at.astimezone(UTC).isoformat(),
                _csv_cell(entry.actor_username),
                _csv_cell(entry.action),
                entry.ip or "",
                _csv_cell(entry.target_type),
                _csv_cell(entry.target_id),
                _csv_cell(json.dumps(entry.details, sort_keys=True, ensure_ascii=False)),
                entry.entry_hash,
            ]
        )


@require_GET
@login_required
def audit_export(request):
    form, filters = _audit_filters(request)
    if filters is None:
        errors = "; ".join(f"{field}: {' '.join(texts)}" for field, texts in form.errors.items())
        return HttpResponseBadRequest(f"Invalid filters: {errors}", content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(_csv_rows(request.user, filters), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
    return response
