"""Every write of the jobs app. Views, the API, tasks and admin actions call these and nothing else."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Case, DateTimeField, F, Value, When
from django.utils import timezone

from accounts.models import Team
from audit.services import audit_record
from jobs.models import Connection, Job, JobResult, JobResultChunk, JobTransition
from jobs.selectors import access
from jobs.selectors.stats import script_stats_record
from jobs.selectors.timing import learned_seconds
from jobs.services import hooks
from jobs.services.rollups import rollup_job_finished
from jobs.services.specs import JobSpec, parse_job_request, spec_as_request
from jobs.services.tally import TallyChange, tally_add
from jobs.states import ACTIVE_STATES, ALLOWED_MOVES, TERMINAL_STATES, JobState
from metrics import recorder
from omlpy_dashboard.fastsql import insert_one, update_each

logger = logging.getLogger(__name__)

# Columns a transition may set beside `state`; anything else is a programming error.
_TRANSITION_FIELDS = frozenset(
    {
        "oml_job_id",
        "oml_job_url",
        "oml_result_url",
        "last_error",
        "submitted_at",
        "oml_accepted_at",
        "oml_finished_at",
        "result_fetched_at",
        "finished_at",
        "next_poll_at",
        "submit_after",
        "deadline_at",
        "poll_count",
        "last_polled_at",
        "oml_elapsed_seconds",
        "expected_seconds",
        "expected_spread",
        "script_source",
        "script_sha256",
        "script_date",
        "script_date_at_finish",
        "script_changed",
        "call_signature",
        "oml_last_running_at",
        "poll_log",
    }
)


def job_transition(
    *,
    job_id: int,
    to_state: str,
    reason: str,
    expected: Iterable[str] | None = None,
    http_status: int | None = None,
    latency_ms: int | None = None,
    detail: dict | None = None,
    at: datetime | None = None,
    **fields,
) -> bool:
    """Move a job to `to_state`, the only way any job's state ever changes.

    The move happens only if the job's current state may move to `to_state` (ALLOWED_MOVES) and, when
    given, is one of `expected`. The conditional UPDATE and the transition row are one transaction.
    Returns True when the job moved; False, writing nothing, when it had already moved elsewhere.
    """
    unknown = set(fields) - _TRANSITION_FIELDS
    if unknown:
        raise TypeError(f"job_transition cannot set {sorted(unknown)}")
    sources = {source for source, targets in ALLOWED_MOVES.items() if to_state in targets}
    if expected is not None:
        sources &= set(expected)
    if not sources:
        return False
    now = at or timezone.now()
    if to_state in TERMINAL_STATES:
        fields.setdefault("finished_at", now)
        fields.setdefault("next_poll_at", None)
        fields.setdefault("submit_after", None)
    with transaction.atomic():
        # Lock the row so that the state read here is the one the UPDATE replaces (on SQLite the
        # IMMEDIATE transaction already holds the write lock).
        row = Job.objects.select_for_update().filter(pk=job_id, state__in=sources).values_list(*_MOVED_COLUMNS).first()
        if row is None:
            return False
        current, job_uuid = row[0], row[1]
        moved = Job.objects.filter(pk=job_id, state=current).update(state=to_state, **fields)
        if not moved:
            return False
        insert_one(
            JobTransition(
                job_id=job_id,
                from_state=current,
                to_state=to_state,
                at=now,
                reason=reason[:500],
                http_status=http_status,
                latency_ms=latency_ms,
                detail=detail or {},
            )
        )
        moved_job = dict(zip(_MOVED_COLUMNS, row, strict=True))
        if to_state in TERMINAL_STATES:
            _job_finished(job_id, to_state, moved_job, now)
        # In this transaction: the notifications outbox (a row written here commits with the move, or not at all).
        hooks.transition_hooks_run(job_id=job_id, job=moved_job, from_state=current, to_state=to_state, at=now)
    recorder.inc("omlpy_job_transitions_total", to_state=to_state)
    # The job's public uuid, which operators search by, whichever code path moved it.
    logger.info("job %s: %s -> %s (%s)", job_id, current, to_state, reason, extra={"job": str(job_uuid)})
    return True


# What job_transition reads of the job it moves: its state, and what a finished job is tallied and learned by.
_MOVED_COLUMNS = (
    "state",
    "uuid",
    "connection_id",
    "kind",
    "team_id",
    "async_flag",
    "script_name",
    "script_owner",
    "oml_accepted_at",
    "oml_finished_at",
    "oml_last_running_at",
    "oml_elapsed_seconds",
    "call_signature",
    "owner_id",
)


def _job_finished(job_id: int, state: str, job: dict, at: datetime) -> None:
    """In the transaction of a job's last transition: count it in the tally (with its result's bytes) and in
    the analytics' hourly rollups and, for an asynchronous success, add its time in OML to its script's
    statistics."""
    rollup_job_finished(job_id=job_id)
    results, size = 0, 0
    if state == JobState.SUCCEEDED:
        stored = JobResult.objects.filter(job_id=job_id).values_list("size_bytes", flat=True).first()
        if stored is not None:
            results, size = 1, stored
    tally_add(
        [
            TallyChange(
                state=state,
                connection_id=job["connection_id"],
                kind=job["kind"],
                team_id=job["team_id"],
                jobs=1,
                results=results,
                result_bytes=size,
            )
        ]
    )
    seconds = learned_seconds(job) if state == JobState.SUCCEEDED and job["async_flag"] else None
    if seconds is not None:
        script_stats_record(
            connection_id=job["connection_id"],
            script_name=job["script_name"],
            script_owner=job["script_owner"],
            signature=job["call_signature"],
            seconds=seconds,
            at=at,
        )


_POLLING_FIELDS = (
    "next_poll_at",
    "last_polled_at",
    "oml_elapsed_seconds",
    "oml_last_running_at",
    "poll_log",
    "deadline_at",
    "last_error",
)


def job_update_polling(*, job_id: int, requests: int = 0, **fields) -> int:
    """Record a status poll that changed nothing: times, `requests` more status requests sent, and any of
    _POLLING_FIELDS; only while the job is still pending. Returns 1 if recorded, 0 if the job had moved on.

    Plain SQL (fastsql.update_each); the polls that find their jobs still running are written many at a
    time the same way (jobs.worker.lifecycle.record_still_running).
    """
    unknown = set(fields) - set(_POLLING_FIELDS)
    if unknown:
        raise TypeError(f"job_update_polling cannot set {sorted(unknown)}")
    return update_each(
        Job,
        [{"pk": job_id, **fields, "poll_count": requests}],
        fields=tuple(sorted(fields)),
        add=("poll_count",),
        where={"state": JobState.PENDING},
    )


# --- Jobs -----------------------------------------------------------------------------------------


def job_create(*, owner, spec: JobSpec, parent: Job | None = None, request=None, action: str = "submit") -> Job:
    """Record a job as `queued` and send it to a worker once the row is committed.

    Raises jobs.selectors.access.ConnectionDenied, recording nothing, when the connection is not granted to the owner.
    """
    from jobs import tasks

    refusal = access.connection_refusal(owner, spec.connection)
    if refusal is not None:
        raise refusal
    team_id = access.home_team_id(owner, connection_id=spec.connection.pk)
    with transaction.atomic():
        job = insert_one(Job(owner=owner, team_id=team_id, parent=parent, **spec.model_fields()))
        audit_record(
            action=action,
            actor=owner,
            request=request,
            target_type="job",
            target_id=str(job.uuid),
            details={"kind": job.kind, "script": job.script_name, "parent": str(parent.uuid) if parent else ""},
        )
        # A lost message is not a lost job: the janitor re-sends the submit of a job left queued. So a broker
        # that cannot take the message is logged, not raised: the job exists and the caller must hear so
        # (an error answer would invite a second submission of the same call).
        transaction.on_commit(lambda: tasks.submit_job.delay(job.pk), robust=True)
    return job


def job_rerun(*, job: Job, actor, request=None) -> Job:
    """A new job with the same request as `job`, linked to it as its parent; its connection must still be
    granted to `actor` (jobs.selectors.access.ConnectionDenied otherwise)."""
    spec = parse_job_request(spec_as_request(job), user=actor)
    return job_create(owner=actor, spec=spec, parent=job, request=request, action="rerun")


def job_clone(*, job: Job, actor, changes: Mapping[str, Any], request=None) -> Job:
    """A new job with `job`'s request changed by `changes`, linked to it as its parent.

    A field in `changes` replaces the original's (null clears it). `parameters` is merged into the original's
    key by key, a key set to null removing it, as a JSON Merge Patch (RFC 7396) does. Raises ValidationError
    when the changed request is not valid.
    """
    data = spec_as_request(job)
    for name, value in changes.items():
        if name == "parameters" and isinstance(value, dict):
            data[name] = _merge_patch(dict(job.parameters or {}), value)
        else:
            # Anything else, a non-object `parameters` included, is left for parse_job_request to judge.
            data[name] = value
    return job_create(
        owner=actor, spec=parse_job_request(data, user=actor), parent=job, request=request, action="clone"
    )


def _merge_patch(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            target[key] = _merge_patch(dict(target[key]), value)
        else:
            target[key] = value
    return target


def job_cancel(*, job: Job, actor, request=None) -> bool:
    """Cancel a job that has not ended. A job OML never saw ends at once; otherwise a worker deletes the
    OML job first and then records the cancellation. Returns False if the job had already ended."""
    from jobs import tasks

    if job.state in TERMINAL_STATES:
        return False
    # The audit entry, the move (or the recorded request) and the message stand or fall together.
    with transaction.atomic():
        audit_record(action="cancel", actor=actor, request=request, target_type="job", target_id=str(job.uuid))
        if job_transition(
            job_id=job.pk, to_state=JobState.CANCELLED, expected=[JobState.QUEUED], reason=f"cancelled by {actor}"
        ):
            return True
        # The request is kept on the row, so that it survives a lost message or a dead worker: the sweep
        # carries it out for a pending job (made due at once), the janitor for any other.
        now = timezone.now()
        Job.objects.filter(pk=job.pk, state__in=sorted(ACTIVE_STATES), cancel_requested_at__isnull=True).update(
            cancel_requested_at=now,
            next_poll_at=Case(
                When(state=JobState.PENDING, then=Value(now)), default=F("next_poll_at"), output_field=DateTimeField()
            ),
        )
        transaction.on_commit(lambda: tasks.cancel_job.delay(job.pk, str(actor)), robust=True)
    return True


# --- Results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredResult:
    size_bytes: int
    sha256: str
    chunk_count: int


def job_result_store(
    *,
    job_id: int,
    chunks: Iterable[bytes],
    content_type: str,
    row_count: int | None = None,
    shape: str = "",
    columns: list[str] | None = None,
) -> JobResult:
    """Store a result body exactly as received, in fixed-size chunks, replacing any earlier copy, with what a
    pass over it found (jobs.results.bodies.describe_body): shape, row count and column names."""
    size = 0
    digest = hashlib.sha256()
    chunk_size = settings.JOBS_RESULT_CHUNK_BYTES
    with transaction.atomic():
        earlier = JobResult.objects.filter(job_id=job_id).values_list("size_bytes", flat=True).first()
        JobResult.objects.filter(job_id=job_id).delete()
        result = JobResult.objects.create(
            job_id=job_id, size_bytes=0, sha256="", content_type=content_type, chunk_count=0
        )
        seq = 0
        buffer = bytearray()

        def flush(data: bytes) -> None:
            nonlocal seq
            JobResultChunk.objects.create(result=result, seq=seq, data=data)
            seq += 1

        for piece in chunks:
            size += len(piece)
            digest.update(piece)
            buffer += piece
            while len(buffer) >= chunk_size:
                flush(bytes(buffer[:chunk_size]))
                del buffer[:chunk_size]
        if buffer or seq == 0:
            flush(bytes(buffer))
        JobResult.objects.filter(pk=result.pk).update(
            size_bytes=size,
            sha256=digest.hexdigest(),
            chunk_count=seq,
            row_count=row_count,
            shape=shape,
            columns=columns,
        )
        # A result is normally stored before its job succeeds, and that transition tallies it; one stored for a
        # job that has already succeeded (replaced, or restored) is tallied here.
        job = Job.objects.filter(pk=job_id, state=JobState.SUCCEEDED).values_list("connection_id", "kind", "team_id")
        for connection_id, kind, team_id in job:
            change = TallyChange(
                JobState.SUCCEEDED,
                connection_id,
                kind,
                team_id,
                results=0 if earlier is not None else 1,
                result_bytes=size - (earlier or 0),
            )
            tally_add([change])
        result.refresh_from_db()
    return result


def result_iter_chunks(result: JobResult) -> Iterator[bytes]:
    """The stored body, chunk by chunk, one row in memory at a time."""
    ids = list(result.chunks.order_by("seq").values_list("id", flat=True))
    for chunk_id in ids:
        data = JobResultChunk.objects.filter(pk=chunk_id).values_list("data", flat=True).get()
        yield bytes(data)


def result_read_all(result: JobResult) -> bytes:
    """The whole body; for small results only (previews, tests)."""
    return b"".join(result_iter_chunks(result))


def results_describe_stored(*, limit: int | None = None) -> int:
    """Record shape, row count and columns of results stored before columns were recorded; answers how many.

    1. Lists the ids of results without columns (at most `limit`), oldest first.
    2. For each, reads its body once (describe_body) outside any transaction, then writes what it found only if
       the row still has no columns (a result replaced meanwhile keeps what its own store recorded).
    A result too wide to record columns for keeps none and is read again by a later run; downloads never
    need this to have run (they find the columns themselves), it only makes them read the body once.
    """
    from jobs.results.bodies import describe_body, result_source

    ids = JobResult.objects.filter(columns__isnull=True).order_by("stored_at", "pk").values_list("pk", flat=True)
    done = 0
    for result_id in list(ids[:limit] if limit else ids):
        result = JobResult.objects.filter(pk=result_id).first()
        if result is None:
            continue
        described = describe_body(result_source(result))
        if described.columns is None:
            continue
        done += JobResult.objects.filter(pk=result_id, columns__isnull=True).update(
            shape=described.shape, row_count=described.rows, columns=described.columns
        )
    return done


# --- Connections --------------------------------------------------------------------------------


def connection_save(
    *,
    name: str,
    base_url: str,
    username: str,
    password: str | None,
    api_version: str = Connection.ApiVersion.V2,
    poll_budget: int = 20,
    poll_strategy: str = "",
    is_default: bool = False,
    connection: Connection | None = None,
    teams: Iterable[Team] | None = None,
) -> Connection:
    """Create or change a connection; `password=None` keeps the stored one, `teams=None` its grants (a new
    connection is then granted to no team: only administrators may use it until they grant it)."""
    with transaction.atomic():
        if is_default:
            Connection.objects.filter(is_default=True).exclude(pk=getattr(connection, "pk", None)).update(
                is_default=False
            )
        connection = connection or Connection()
        connection.name = name
        connection.base_url = base_url.rstrip("/")
        connection.username = username
        connection.api_version = api_version
        connection.poll_budget = poll_budget
        connection.poll_strategy = poll_strategy
        connection.is_default = is_default
        if password is not None:
            connection.set_password(password)
        if not connection.password_encrypted:
            raise ValueError("A new connection needs a password.")
        connection.full_clean()
        connection.save()
        if teams is not None:
            connection.teams.set(teams)
    return connection
