"""The history as CSV: the jobs of the history page's filters and sort, for the page's link and the API alike.

Rows are read in keyset batches (jobs.selectors.jobs.job_history_all) and written as they come, so a response streams
with flat memory whatever the number of jobs. Text cells follow the spreadsheet rule of jobs.spreadsheet.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header

from audit.services import AuditAction, audit_record
from jobs.selectors.jobs import HistoryFilters, HistoryRow, job_history_all
from omlpy_dashboard.spreadsheet import formula_safe

HEADER = (
    "job",
    "state",
    "kind",
    "script",
    "script_owner",
    "owner",
    "connection",
    "created_at",
    "finished_at",
    "duration_seconds",
)
FLUSH_BYTES = 64 * 1024


def _row(job: HistoryRow) -> list[str]:
    duration = (job.finished_at - job.created_at).total_seconds() if job.finished_at else None
    return [
        str(job.uuid),
        job.state,
        job.kind,
        formula_safe(job.script_name),
        formula_safe(job.script_owner),
        formula_safe(job.owner_name),
        formula_safe(job.connection_name),
        job.created_at.isoformat(),
        job.finished_at.isoformat() if job.finished_at else "",
        "" if duration is None else f"{duration:.3f}",
    ]


def history_csv_chunks(user, filters: HistoryFilters, *, sort: str) -> Iterator[bytes]:
    """The CSV (UTF-8, times in UTC as ISO 8601), in pieces of about FLUSH_BYTES."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADER)
    for job in job_history_all(user, filters, sort=sort):
        writer.writerow(_row(job))
        if buffer.tell() >= FLUSH_BYTES:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def history_export_response(request, filters: HistoryFilters, *, sort: str, via: str) -> StreamingHttpResponse:
    """The streamed download, recorded in the audit trail as downloads are (who, when, with which query)."""
    response = StreamingHttpResponse(
        history_csv_chunks(request.user, filters, sort=sort), content_type="text/csv; charset=utf-8"
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=f"jobs-{stamp}.csv")
    audit_record(
        action=AuditAction.HISTORY_EXPORT,
        request=request,
        target_type="jobs",
        details={"format": "csv", "via": via, "sort": sort, "query": request.GET.urlencode()[:2000]},
    )
    return response
