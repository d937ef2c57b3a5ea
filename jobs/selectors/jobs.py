"""Reads that pages and the API share. Lists paginate by keyset on (sort key, id) and never count the table."""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid as uuid_lib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import DurationField, ExpressionWrapper, F, Q, QuerySet
from django.utils import timezone

from jobs.models import Connection, Job, JobPin, JobTransition
from jobs.selectors.access import visible_jobs
from jobs.selectors.timing import job_phases
from jobs.states import TERMINAL_STATES

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
    items: list
    next_cursor: str | None
    # The cursor of the page before this one (its rows come before the first row here), None on the first page.
    prev_cursor: str | None = None


# A cursor names the last (or first) row shown by its sort key and its id. Created-at sorts use the row's
# created_at in microseconds since 1970; "longest" uses "d" and the duration in microseconds for a finished job,
# "n" and created_at for a job with no duration yet (they come last). Every string of this shape names a key
# the database can compare with (years 1970 to 5138, ids below 2**63).
CURSOR_PATTERN = r"(?:[0-9]{1,17}|d[0-9]{1,17}|n[0-9]{1,17})-[0-9]{1,18}"
CURSOR_RE = re.compile(CURSOR_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _search_condition(term: str) -> Q:
    term = term.strip()
    condition = Q(oml_job_id=term) | Q(script_name__istartswith=term)
    with contextlib.suppress(ValueError):
        condition |= Q(uuid=uuid_lib.UUID(term))
    return condition


def default_window_start() -> datetime:
    """Where the history and analytics start without dates: DEFAULT_WINDOW ago, at the start of that UTC hour
    (so that the analytics' hourly rollups cover the same jobs as the rows)."""
    return (timezone.now() - DEFAULT_WINDOW).astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def job_history_queryset(user, filters: HistoryFilters) -> QuerySet[Job]:
    """The jobs `user` may see that match `filters`, newest first. Without a date range, the last 7 days."""
    jobs = visible_jobs(user)
    created_from = filters.created_from
    # Pinned jobs are looked for whatever their age: a hold is usually on an old job.
    if created_from is None and filters.created_to is None and not filters.search and not filters.pinned:
        created_from = default_window_start()
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


def job_timeline(job: Job) -> list[JobTransition]:
    return list(JobTransition.objects.filter(job=job).order_by("at", "id"))


def job_durations(job: Job) -> dict[str, float | None]:
    """Seconds spent waiting in the queue, in OML for sure, with the finish unseen (detection lag), and
    fetching the result (jobs.selectors.timing.job_phases); None where not reached."""

    def between(start, end):
        return (end - start).total_seconds() if start and end else None

    started = job.submitted_at or job.created_at
    return {
        **job_phases(job),
        "total": between(job.created_at, job.finished_at),
        "running": between(started, timezone.now()) if not job.is_terminal else None,
    }


HISTORY_SORTS = ("newest", "oldest", "longest")
# What a job's "duration" is on the history page: created to finished (what the analyst waited).
DURATION = ExpressionWrapper(F("finished_at") - F("created_at"), output_field=DurationField())


@dataclass(frozen=True)
class _Segment:
    """A run of rows of one sort ordered by one key and the id, both in one direction.

    A sort is one or more segments shown one after the other: "longest" shows finished jobs by duration, then
    the jobs with no duration yet, newest first. `tag` starts the cursors of the segment's rows.
    """

    tag: str
    condition: Q
    key: str  # a column, or "duration" (DURATION, annotated)
    descending: bool

    def rows(self, jobs: QuerySet[Job], *, forward: bool) -> QuerySet[Job]:
        jobs = jobs.filter(self.condition)
        if self.key == "duration":
            jobs = jobs.annotate(duration=DURATION)
        descending = self.descending == forward
        prefix = "-" if descending else ""
        return jobs.order_by(f"{prefix}{self.key}", f"{prefix}id")

    def beyond(self, value, pk: int, *, forward: bool) -> Q:
        """Rows after (value, pk) in the direction read. The redundant bound on the key alone lets PostgreSQL
        start its index scan at the cursor (the OR alone is only a filter to it; bench/history.py)."""
        key = self.key
        if self.descending == forward:
            return Q(**{f"{key}__lte": value}) & (Q(**{f"{key}__lt": value}) | Q(**{key: value, "id__lt": pk}))
        return Q(**{f"{key}__gte": value}) & (Q(**{f"{key}__gt": value}) | Q(**{key: value, "id__gt": pk}))

    def cursor(self, row: HistoryRow | Job) -> str:
        if self.key == "duration":
            return f"{self.tag}{(row.finished_at - row.created_at) // _MICROSECOND}-{row.pk}"
        return f"{self.tag}{(row.created_at - _EPOCH) // _MICROSECOND}-{row.pk}"

    def decode(self, cursor: str):
        number, pk = cursor.lstrip("dn").rsplit("-", 1)
        micros = int(number) * _MICROSECOND
        return (micros if self.key == "duration" else _EPOCH + micros), int(pk)


_SORTS: dict[str, tuple[_Segment, ...]] = {
    "newest": (_Segment("", Q(), "created_at", descending=True),),
    "oldest": (_Segment("", Q(), "created_at", descending=False),),
    "longest": (
        _Segment("d", Q(finished_at__isnull=False), "duration", descending=True),
        _Segment("n", Q(finished_at__isnull=True), "created_at", descending=True),
    ),
}


def _segment_of(segments: tuple[_Segment, ...], cursor: str) -> int:
    """The segment a cursor of this sort points into. Raises ValueError for a string that is no cursor.

    A well-formed cursor of another sort (or one edited by hand) still names a position: it is read in the
    first segment keyed as it is (a created-at number in a created-at segment), else in the first segment.
    """
    if not CURSOR_RE.fullmatch(cursor):
        raise ValueError("Invalid cursor.")
    tag = cursor[0] if cursor[0] in "dn" else ""
    for index, segment in enumerate(segments):
        if segment.tag == tag:
            return index
    keyed_by_created = tag in ("", "n")
    for index, segment in enumerate(segments):
        if (segment.key == "created_at") == keyed_by_created:
            return index
    return 0


def job_history_sorted(
    user,
    filters: HistoryFilters,
    *,
    sort: str = "newest",
    cursor: str | None = None,
    before: str | None = None,
    limit: int = 50,
    rows: bool = True,
) -> Page:
    """One page of the history in one of HISTORY_SORTS, by keyset both ways: HistoryRows (the page's rows),
    or without `rows` Job instances with their owner and connection (the API's).

    `cursor` gives the page after that row, `before` the page before that row (read backwards, shown in the
    sort's order); neither, the first page. Raises ValueError for a cursor this sort did not make.

    1. Find the segment the cursor belongs to (newest and oldest have one; longest has finished jobs by
       duration, then jobs with no duration yet, newest first).
    2. Read up to limit + 1 rows of that segment beyond the cursor, in the direction of travel; if that is not
       enough, go on from the start of the next segment in that direction (the end of it, going back).
    3. The extra row says whether another page lies that way; the other way always holds the cursor's row.
    """
    limit = max(1, min(limit, MAX_PAGE))
    return _keyset_page(
        job_history_queryset(user, filters), _SORTS.get(sort, _SORTS["newest"]), cursor, before, limit, rows=rows
    )


def _keyset_page(
    jobs: QuerySet[Job], segments: tuple[_Segment, ...], cursor: str | None, before: str | None, limit: int, *, rows
) -> Page:
    forward = before is None
    mark = cursor if forward else before
    # 1. Where to start.
    if mark:
        start = _segment_of(segments, mark)
        value, pk = segments[start].decode(mark)
    else:
        start, value, pk = 0, None, None
    order = range(start, len(segments)) if forward else range(start, -1, -1)
    # 2. Rows beyond the cursor, segment after segment.
    found: list[tuple[_Segment, HistoryRow | Job]] = []
    for index in order:
        segment = segments[index]
        selected = segment.rows(jobs, forward=forward)
        if index == start and mark:
            selected = selected.filter(segment.beyond(value, pk, forward=forward))
        wanted = limit + 1 - len(found)
        read = history_rows(selected[:wanted]) if rows else selected.select_related("owner", "connection")[:wanted]
        found.extend((segment, row) for row in read)
        if len(found) > limit:
            break
    # 3. The links either way.
    more = len(found) > limit
    found = found[:limit]
    if not forward:
        found.reverse()
    items = [row for _, row in found]
    if not found:
        return Page(items=[], next_cursor=None, prev_cursor=None)
    first, last = found[0], found[-1]
    if forward:
        next_cursor = last[0].cursor(last[1]) if more else None
        prev_cursor = first[0].cursor(first[1]) if mark else None
    else:
        next_cursor = last[0].cursor(last[1])
        prev_cursor = first[0].cursor(first[1]) if more else None
    return Page(items=items, next_cursor=next_cursor, prev_cursor=prev_cursor)


EXPORT_BATCH = 1000


def job_history_all(user, filters: HistoryFilters, *, sort: str = "newest") -> Iterator[HistoryRow]:
    """Every job of the history with these filters, in the page's order, read EXPORT_BATCH rows at a time by
    the page's own keyset (one bounded query a batch: memory stays flat however many jobs match)."""
    jobs = job_history_queryset(user, filters)
    segments = _SORTS.get(sort, _SORTS["newest"])
    cursor = None
    while True:
        page = _keyset_page(jobs, segments, cursor, None, EXPORT_BATCH, rows=True)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def jobs_by_uuids(user, uuids) -> list[HistoryRow]:
    """The rows of the jobs among `uuids` that `user` may see, in one query (the history page's live rows)."""
    return history_rows(visible_jobs(user).filter(uuid__in=list(uuids)))


# --- Script lists for the pickers -----------------------------------------------------------------


class ScriptListUnavailable(Exception):
    """OML did not list the scripts of a connection; the message is OML's answer or why it did not come."""


def _script_list_key(connection: Connection) -> str:
    # Any change to the connection (its URL, version, user or password) names a new list.
    stored = f"{connection.pk}|{connection.updated_at.isoformat() if connection.updated_at else ''}|"
    stored += f"{connection.base_url}|{connection.api_version}|{connection.username}"
    return f"scripts:{hashlib.sha256(stored.encode()).hexdigest()[:32]}"


def scripts_for_picker(connection: Connection) -> list[dict]:
    """The scripts OML lists for `connection` (name, owner, description, date, script), in OML's order, for
    the pickers of the compose form and the API: reused for SCRIPT_LIST_CACHE_SECONDS. A failure is not kept,
    so the next ask tries OML again. What a job runs is never read from here (jobs.worker.lifecycle reads OML's list
    just before each POST). Raises ScriptListUnavailable."""
    from jobs.oml.client import client_for
    from jobs.oml.errors import OMLError

    key = _script_list_key(connection)
    lifetime = settings.SCRIPT_LIST_CACHE_SECONDS
    if lifetime > 0:
        with contextlib.suppress(Exception):  # the cache is an optimisation: its outage asks OML instead
            kept = cache.get(key)
            if isinstance(kept, list):
                return kept
    try:
        scripts = client_for(connection.oml_connection()).scripts()
    except OMLError as exc:
        raise ScriptListUnavailable(str(exc)) from None
    if lifetime > 0:
        with contextlib.suppress(Exception):
            cache.set(key, scripts, timeout=lifetime)
    return scripts
