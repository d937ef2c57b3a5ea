"""Reads that pages and the API share. Lists paginate by keyset on (created_at, id) and never count the table."""

from __future__ import annotations

import contextlib
import re
import uuid as uuid_lib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from .access import visible_jobs
from .models import Job, JobPin, JobTransition
from .states import TERMINAL_STATES
from .timing import job_phases

DEFAULT_WINDOW = timedelta(days=7)
MAX_PAGE = 200


@dataclass
class HistoryFilters:
    state: list[str] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    script: str = ""
    owner: str = ""
    connection: int | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    search: str = ""
    pinned: bool = False


@dataclass
class Page:
    items: list[Job]
    next_cursor: str | None


# A cursor is the last row's created_at in microseconds since 1970 and its id: every string of this shape
# names a moment and an id the database can compare with (years 1970 to 5138, ids below 2**63).
CURSOR_PATTERN = r"[0-9]{1,17}-[0-9]{1,18}"
CURSOR_RE = re.compile(CURSOR_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def encode_cursor(job: Job | HistoryRow) -> str:
    return f"{(job.created_at - _EPOCH) // _MICROSECOND}-{job.pk}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """Raises ValueError for anything that is not a cursor this module made."""
    if not CURSOR_RE.fullmatch(cursor):
        raise ValueError("Invalid cursor.")
    micros, pk = cursor.split("-")
    return _EPOCH + int(micros) * _MICROSECOND, int(pk)


def _search_condition(term: str) -> Q:
    term = term.strip()
    condition = Q(oml_job_id=term) | Q(script_name__istartswith=term)
    with contextlib.suppress(ValueError):
        condition |= Q(uuid=uuid_lib.UUID(term))
    return condition


def job_history_queryset(user, filters: HistoryFilters) -> QuerySet[Job]:
    """The jobs `user` may see that match `filters`, newest first. Without a date range, the last 7 days."""
    jobs = visible_jobs(user)
    created_from = filters.created_from
    # Pinned jobs are looked for whatever their age: a hold is usually on an old job.
    if created_from is None and filters.created_to is None and not filters.search and not filters.pinned:
        created_from = timezone.now() - DEFAULT_WINDOW
    if created_from is not None:
        jobs = jobs.filter(created_at__gte=created_from)
    if filters.created_to is not None:
        jobs = jobs.filter(created_at__lt=filters.created_to)
    if filters.state:
        jobs = jobs.filter(state__in=filters.state)
    if filters.kind:
        jobs = jobs.filter(kind__in=filters.kind)
    if filters.script:
        jobs = jobs.filter(script_name=filters.script)
    if filters.owner:
        jobs = jobs.filter(owner__username=filters.owner)
    if filters.connection:
        jobs = jobs.filter(connection_id=filters.connection)
    if filters.search:
        jobs = jobs.filter(_search_condition(filters.search))
    if filters.pinned:
        # Pins are few (holds): their job ids first, then the history index as for any filter.
        jobs = jobs.filter(pk__in=JobPin.objects.values("job_id"))
    return jobs.order_by("-created_at", "-id")


# Keyset conditions. The OR alone is only a filter to PostgreSQL, which then reads the index from the first
# page on; the redundant bound on created_at lets it start the index scan at the cursor (bench/history.py).
def _after_desc(created: datetime, pk: int) -> Q:
    return Q(created_at__lte=created) & (Q(created_at__lt=created) | Q(created_at=created, id__lt=pk))


def _after_asc(created: datetime, pk: int) -> Q:
    return Q(created_at__gte=created) & (Q(created_at__gt=created) | Q(created_at=created, id__gt=pk))


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """A job as the history page lists it: the columns of its row, read as values rather than as a model
    instance with its owner and connection (three instances a row cost more than the rest of the page)."""

    pk: int
    uuid: uuid_lib.UUID
    state: str
    kind: str
    script_name: str
    script_owner: str
    created_at: datetime
    finished_at: datetime | None
    owner_name: str
    connection_name: str

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES


HISTORY_ROW_COLUMNS = (
    "pk",
    "uuid",
    "state",
    "kind",
    "script_name",
    "script_owner",
    "created_at",
    "finished_at",
    "owner__username",
    "connection__name",
)


def history_rows(jobs: QuerySet[Job]) -> list[HistoryRow]:
    return [HistoryRow(*values) for values in jobs.values_list(*HISTORY_ROW_COLUMNS)]


def _page(jobs: QuerySet[Job], limit: int, rows: bool) -> Page:
    items = history_rows(jobs[: limit + 1]) if rows else list(jobs.select_related("owner", "connection")[: limit + 1])
    next_cursor = encode_cursor(items[limit - 1]) if len(items) > limit else None
    return Page(items=items[:limit], next_cursor=next_cursor)


def job_history(
    user, filters: HistoryFilters, *, cursor: str | None = None, limit: int = 50, rows: bool = False
) -> Page:
    """One page of history after `cursor`; the cursor of the next page, or None on the last one.

    Items are Job instances with their owner and connection, or with `rows` HistoryRows (the page's rows).
    """
    limit = max(1, min(limit, MAX_PAGE))
    jobs = job_history_queryset(user, filters)
    if cursor:
        created, pk = decode_cursor(cursor)
        jobs = jobs.filter(_after_desc(created, pk))
    return _page(jobs, limit, rows)


def job_timeline(job: Job) -> list[JobTransition]:
    return list(JobTransition.objects.filter(job=job).order_by("at", "id"))


def job_durations(job: Job) -> dict[str, float | None]:
    """Seconds spent waiting in the queue, in OML for sure, with the finish unseen (detection lag), and
    fetching the result (jobs.timing.job_phases); None where not reached."""

    def between(start, end):
        return (end - start).total_seconds() if start and end else None

    started = job.submitted_at or job.created_at
    return {
        **job_phases(job),
        "total": between(job.created_at, job.finished_at),
        "running": between(started, timezone.now()) if not job.is_terminal else None,
    }


HISTORY_SORTS = ("newest", "oldest", "longest")


def job_history_sorted(
    user, filters: HistoryFilters, *, sort: str = "newest", cursor: str | None = None, limit: int = 50
) -> Page:
    """The history page in one of HISTORY_SORTS, as HistoryRows.

    - newest: job_history (keyset on (created_at, id) descending).
    - oldest: the same keyset ascending; the cursor is the last row shown.
    - longest: finished jobs of the filtered window by total duration (finished_at - created_at), the longest
      `limit` only, on one page with no cursor. Durations are not indexed, so the database sorts only the
      rows inside the window (the last 7 days unless the filters say otherwise), never the whole table.
    """
    if sort == "oldest":
        limit = max(1, min(limit, MAX_PAGE))
        jobs = job_history_queryset(user, filters).order_by("created_at", "id")
        if cursor:
            created, pk = decode_cursor(cursor)
            jobs = jobs.filter(_after_asc(created, pk))
        return _page(jobs, limit, rows=True)
    if sort == "longest":
        from django.db.models import DurationField, ExpressionWrapper, F

        limit = max(1, min(limit, MAX_PAGE))
        duration = ExpressionWrapper(F("finished_at") - F("created_at"), output_field=DurationField())
        jobs = (
            job_history_queryset(user, filters)
            .filter(finished_at__isnull=False)
            .annotate(total_duration=duration)
            .order_by("-total_duration", "-id")
        )
        return Page(items=history_rows(jobs[:limit]), next_cursor=None)
    return job_history(user, filters, cursor=cursor, limit=limit, rows=True)


def jobs_by_uuids(user, uuids) -> list[HistoryRow]:
    """The rows of the jobs among `uuids` that `user` may see, in one query (the history page's live rows)."""
    return history_rows(visible_jobs(user).filter(uuid__in=list(uuids)))
