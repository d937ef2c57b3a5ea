"""The worker side of a job's life: submit, the poll sweep, fetch, cancel, and the janitor.

Every state change goes through jobs.services.jobs.job_transition (compare-and-set plus a transition row), so
that a duplicate message, two workers or a worker killed at any moment can neither lose a job nor move it
twice. HTTP to OML happens outside database transactions.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.services import AuditAction, audit_record
from jobs.models import Connection, Job, JobTransition
from jobs.oml.client import OMLClient, body_error, client_for
from jobs.oml.errors import OMLError
from jobs.selectors.stats import call_signature, script_durations
from jobs.selectors.timing import oml_bounds
from jobs.services import hooks
from jobs.services.jobs import job_result_store, job_transition, job_update_polling
from jobs.states import ACTIVE_STATES, JobState
from jobs.worker import polling
from metrics import recorder
from omlpy_dashboard.fastsql import read_with, update_each, update_each_limit
from omlpy_dashboard.logs import log_bind, log_context

logger = logging.getLogger(__name__)

S = JobState
STATUS_500_MARK = "OML answered 500 on the status URL; asking once more before calling the job failed."
# The head of a result read to look for an error answer in it (jobs.oml.client.body_error judges it).
ERROR_BODY_LIMIT = 1024 * 1024
FETCH_ATTEMPTS = 3


def _now():
    return timezone.now()


def _client(job: Job) -> OMLClient:
    return client_for(job.connection.oml_connection())


def fail(job_id: int, expected: str, reason: str, *, error: str | None = None, **fields) -> bool:
    """Move a job from `expected` to failed, the one way the worker fails a job: `reason` goes to its timeline
    (cut to the column's 500 characters), `error` (the reason when not given) to its last_error. Returns
    False, writing nothing, when the job had already left `expected`."""
    return job_transition(
        job_id=job_id,
        to_state=S.FAILED,
        expected=[expected],
        reason=reason[:500],
        last_error=reason if error is None else error,
        **fields,
    )


# --- Submit -----------------------------------------------------------------------------------


def _job_in_state(job_id: int, state: str) -> Job | None:
    """The job with its connection if it is in `state`. Plain SQL (fastsql.read_with): the worker reads one
    for every submission and fetch, and the compiled queryset cost more than the query."""
    return read_with(Job, "connection", id=job_id, state=state)


def _listed_script(job: Job, client: OMLClient) -> dict | None:
    """The job's script as OML lists it at this moment (a list read sent after this call began, which jobs
    starting or finishing together share; never a cached list: what runs is what is listed now), or None
    when the list cannot be read or does not show it."""
    try:
        return client.listed_script(job.script_name, job.script_owner)
    except OMLError as exc:
        logger.info("job %s: the script list could not be read (%s)", job.pk, exc)
        return None


def _script_snapshot(job: Job, client: OMLClient) -> dict:
    """The script OML is about to run, read just before the POST: its source, sha256 and OML's date for it."""
    item = _listed_script(job, client)
    if item is None:
        return {}
    source = item.get("script") or ""
    snapshot = {"script_date": (item.get("date") or "")[:64]}
    if source:
        snapshot |= {"script_source": source, "script_sha256": hashlib.sha256(source.encode()).hexdigest()}
    return snapshot


def _script_check(job: Job, client: OMLClient) -> dict:
    """At the finish: the script's date listed now, and whether it differs from the snapshot's (OML dates a
    script when it is replaced). Only the date is read; a server that lists no dates has the source compared
    instead. Nothing when no snapshot was taken or the list cannot be read now."""
    if not (job.script_date or job.script_sha256):
        return {}
    item = _listed_script(job, client)
    if item is None:
        return {}
    date = (item.get("date") or "")[:64]
    if job.script_date:
        changed = date != job.script_date
    else:
        source = item.get("script") or ""
        changed = bool(source) and hashlib.sha256(source.encode()).hexdigest() != job.script_sha256
    return {"script_date_at_finish": date, "script_changed": changed}


def _audit_sent(job: Job, snapshot: dict) -> None:
    """The submission's audit entry for what OML was sent: the script by name, owner, sha256 and OML's date,
    the job's own snapshot (empty when OML did not list the script). Written with the move that records it."""
    owner = get_user_model().objects.filter(pk=job.owner_id).only("pk", "username").first()
    audit_record(
        action=AuditAction.SENT_TO_OML,
        actor=owner,
        target_type="job",
        target_id=str(job.uuid),
        details={
            "kind": job.kind,
            "script": job.script_name,
            "script_owner": job.script_owner,
            "script_sha256": snapshot.get("script_sha256", ""),
            "script_date": snapshot.get("script_date", ""),
        },
    )


def expectation_for(job: Job) -> polling.Expectation | None:
    """What past successful runs of the same script on the same connection say about this one."""
    if strategy_of(job) != "learned":
        return None
    recorded = script_durations(
        connection_id=job.connection_id,
        script_name=job.script_name,
        script_owner=job.script_owner,
        signature=job.call_signature or call_signature(job),
    )
    learned = polling.learn(recorded) if recorded else None
    if learned is not None:
        return learned
    # Scripts whose statistics hold too few runs yet (they last ran before statistics were kept): their history
    # is in the job rows still there.
    runs = (
        Job.objects.filter(
            connection_id=job.connection_id,
            script_name=job.script_name,
            script_owner=job.script_owner,
            state=S.SUCCEEDED,
            async_flag=True,
            oml_accepted_at__isnull=False,
            oml_finished_at__isnull=False,
        )
        .order_by("-finished_at")
        .values_list("oml_accepted_at", "oml_finished_at", "oml_elapsed_seconds")[: polling.HISTORY_RUNS]
    )
    return polling.learn([(done - accepted).total_seconds() for accepted, done, _ in runs])


def strategy_of(job: Job) -> str:
    """The connection's poll strategy, or the deployment's default."""
    return job.connection.poll_strategy or settings.JOBS_POLL_STRATEGY


def _refusals(job_id: int) -> int:
    return JobTransition.objects.filter(job_id=job_id, to_state=S.QUEUED).count()


@log_context()
def submit(job_id: int) -> None:
    """Send a queued job to OML.

    1. Compare-and-set queued -> submitting (async) or running (sync); a duplicate message stops here.
    2. POST outside any transaction.
    3. 201: -> pending with the job URL and the first poll time. 200 (sync): store the result, -> succeeded.
       Refused (429/503/no free resource): -> queued and sent again shortly, up to a limit.
       Outcome unknown (timeout after sending): -> failed; OML has no idempotency key, so never resubmit.
    """
    job = _job_in_state(job_id, S.QUEUED)
    if job is None:
        return
    log_bind(job=job.uuid)
    client = _client(job)
    job.call_signature = call_signature(job)
    snapshot = _script_snapshot(job, client)
    for name, value in snapshot.items():
        setattr(job, name, value)  # the finish of a synchronous call compares with it
    expected = expectation_for(job)
    now = _now()
    target = S.SUBMITTING if job.async_flag else S.RUNNING
    learned = {"expected_seconds": expected.median, "expected_spread": expected.spread} if expected else {}
    with transaction.atomic():
        moved = job_transition(
            job_id=job.pk,
            to_state=target,
            expected=[S.QUEUED],
            reason="sending to OML",
            # The timeline keeps which version of the script was sent, beside the job's own snapshot.
            detail={key: snapshot[key] for key in ("script_sha256", "script_date") if snapshot.get(key)},
            at=now,
            submitted_at=now,
            submit_after=None,
            call_signature=job.call_signature,
            **snapshot,
            **learned,
        )
        if moved:
            # The audit trail says what was sent, from the same snapshot, in the same transaction.
            _audit_sent(job, snapshot)
    if not moved:
        return
    try:
        answer = client.submit(job.kind_path, job.script_name, job.script_owner, job.oml_body())
    except OMLError as exc:
        _submit_failed(job, target, exc)
        return
    if answer.job_url:
        accepted = _now()
        timeout = job.timeout or settings.JOBS_DEFAULT_TIMEOUT
        job_transition(
            job_id=job.pk,
            to_state=S.PENDING,
            expected=[S.SUBMITTING],
            reason="OML accepted the job",
            http_status=answer.http_status,
            latency_ms=answer.latency_ms,
            detail={"location": answer.job_url},
            at=accepted,
            oml_job_id=answer.job_id,
            oml_job_url=answer.job_url,
            oml_accepted_at=accepted,
            next_poll_at=accepted + timedelta(seconds=_first_delay(job, expected)),
            deadline_at=accepted + timedelta(seconds=timeout + settings.JOBS_DEADLINE_GRACE),
        )
        return
    if job.async_flag:
        # A 200 to an asynchronous call: the server ran it synchronously. Keep the answer all the same.
        logger.warning("job %s: OML answered an async call with 200", job.pk)
    # A synchronous call is seen whole: its OML time is the call's (jobs.selectors.timing), with no detection lag.
    recorder.observe("omlpy_job_oml_duration_seconds", answer.latency_ms / 1000)
    try:
        _store_and_finish(job, target, iter([answer.body]), answer.content_type, answer.http_status, answer.latency_ms)
    except OMLError as exc:
        # The call ran; sending it again could run it twice. Keep what is known and fail.
        fail(job.pk, target, exc.message, http_status=answer.http_status, latency_ms=answer.latency_ms)


def _first_delay(job: Job, expected: polling.Expectation | None) -> float:
    if strategy_of(job) == "fixed":
        return settings.JOBS_POLL_FIXED_INTERVAL
    return polling.first_delay(expected)


def _submit_failed(job: Job, state: str, exc: OMLError) -> None:
    detail = {"error": exc.message}
    if not exc.permanent and not exc.outcome_unknown and _refusals(job.pk) < settings.JOBS_SUBMIT_MAX_REFUSALS:
        # The sweep sends it again once submit_after has come.
        retry_in = min(2 ** (_refusals(job.pk) + 1), 30)
        job_transition(
            job_id=job.pk,
            to_state=S.QUEUED,
            expected=[state],
            reason=f"OML refused the call, will try again in {retry_in} s: {exc.message}",
            http_status=exc.http_status,
            latency_ms=exc.latency_ms,
            detail=detail,
            submit_after=_now() + timedelta(seconds=retry_in),
        )
        return
    reason = (
        f"submission outcome unknown: {exc.message}" if exc.outcome_unknown else f"OML refused the call: {exc.message}"
    )
    fail(
        job.pk,
        state,
        reason,
        error=exc.message,
        http_status=exc.http_status,
        latency_ms=exc.latency_ms,
        detail=detail,
    )


# --- Results ----------------------------------------------------------------------------------


def _describe(path_or_bytes) -> tuple[str, int | None, list[str] | None]:
    """Shape, row count and column names of a stored body, in one pass (jobs.results.bodies knows the shapes)."""
    from jobs.results.bodies import describe_body

    try:
        described = describe_body(path_or_bytes)
    except Exception:  # a body we cannot describe is still stored exactly as received
        logger.exception("could not describe a result")
        return "", None, None
    return described.shape, described.rows, described.columns


def _store_and_finish(job: Job, from_state: str, chunks, content_type: str, http_status: int, latency_ms: int) -> bool:
    """Spool the body to a temporary file (bounded memory, no transaction held during the download),
    check it, then store it and finish the job in one transaction."""
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
        size = 0
        for piece in chunks:
            spool.write(piece)
            size += len(piece)
        spool.seek(0)
        # A small body may be an error in disguise: OML's error answer inside a 200 (jobs.oml judges it).
        message = body_error(spool.read(ERROR_BODY_LIMIT + 1))
        if message is not None:
            return fail(
                job.pk,
                from_state,
                f"OML reported an error: {message}",
                error=message,
                http_status=http_status,
                latency_ms=latency_ms,
            )

        def reread():
            spool.seek(0)
            return iter(lambda: spool.read(256 * 1024), b"")

        shape, rows, columns = _describe(reread)
        if shape == "text" and "json" in content_type.lower():
            # Cut short or garbled on the way: fetching again is safe, and the body is not kept.
            raise OMLError("OML sent a result that is not valid JSON.", permanent=False, http_status=http_status)
        # Outside the transaction (HTTP): was the script replaced while the job ran?
        check = _script_check(job, _client(job))
        spool.seek(0)
        now = _now()
        with transaction.atomic():
            locked = Job.objects.select_for_update().filter(pk=job.pk, state=from_state).exists()
            if not locked:
                return False
            job_result_store(
                job_id=job.pk,
                chunks=iter(lambda: spool.read(settings.JOBS_RESULT_CHUNK_BYTES), b""),
                content_type=content_type,
                row_count=rows,
                shape=shape,
                columns=columns,
            )
            extra = {"oml_finished_at": now} if from_state != S.FETCHING else {}
            return job_transition(
                job_id=job.pk,
                to_state=S.SUCCEEDED,
                expected=[from_state],
                reason="result stored",
                http_status=http_status,
                latency_ms=latency_ms,
                detail={"bytes": size, "rows": rows, "shape": shape},
                at=now,
                result_fetched_at=now,
                **extra,
                **check,
            )


@log_context()
def fetch(job_id: int) -> None:
    """GET the result of a job OML has finished and store it; an error answer fails the job verbatim.
    A transient failure leaves the job in `fetching` for the janitor to fetch again."""
    job = _job_in_state(job_id, S.FETCHING)
    if job is None:
        return
    log_bind(job=job.uuid)
    url = job.oml_result_url or f"{job.oml_job_url}/result"
    for attempt in range(FETCH_ATTEMPTS):
        try:
            stream = _client(job).result(url)
            _store_and_finish(
                job, S.FETCHING, stream.chunks, stream.content_type, stream.http_status, stream.latency_ms
            )
            return
        except OMLError as exc:
            # A 500 means the job failed, or the server stumbled: believe it when it says so twice.
            believed = exc.permanent and not (exc.http_status == 500 and attempt == 0)
            if believed:
                fail(
                    job.pk,
                    S.FETCHING,
                    f"OML reported an error: {exc.message}",
                    error=exc.message,
                    http_status=exc.http_status,
                    latency_ms=exc.latency_ms,
                )
                return
            logger.info("job %s: result not fetched yet (%s)", job.pk, exc)
            time.sleep(0.2 * 2**attempt)


# --- The poll sweep ---------------------------------------------------------------------------

_executors: dict[str, ThreadPoolExecutor] = {}
_executor_lock = threading.Lock()


def _pool(name: str = "poll") -> ThreadPoolExecutor:
    """The process's threads for the sweep's submissions and polls ("poll": JOBS_SWEEP_THREADS), and for its
    fetches ("fetch": a quarter as many, at least one; a job is fetched once, polled many times): a fetch that
    takes long holds a thread of its own pool, never one the next sweep's polls need. Each thread holds a
    database connection while it works."""
    with _executor_lock:
        executor = _executors.get(name)
        if executor is None:
            executor = ThreadPoolExecutor(max_workers=_pool_size(name), thread_name_prefix=name)
            _executors[name] = executor
        return executor


def _pool_size(name: str) -> int:
    return settings.JOBS_SWEEP_THREADS if name == "poll" else max(1, settings.JOBS_SWEEP_THREADS // 4)


@dataclass(frozen=True)
class PollOutcome:
    """What a poll leaves for the sweep to do: the row of a job still running (written with the sweep's
    others in one statement, record_still_running), or a job OML finished whose result is to be fetched."""

    still_running: dict | None = None
    to_fetch: int | None = None


def sweep() -> int:
    """One tick of tracking, in the order below; returns how many polls and submissions it made.

    1. Claim the pending jobs whose poll is due, read whole (a poll reads nothing more), under a lease.
    2. Poll them concurrently, over pooled HTTP sessions.
    3. Record every "still running" answer of this sweep in one statement, right away: within the lease.
    4. Start fetching the results of the jobs OML finished, on threads of their own.
    5. Claim the queued jobs their submit message has not reached after JOBS_SUBMIT_GRACE.
    6. Send the synchronous ones among them back to the queue as messages (a call can hold a thread long).
    7. Submit the asynchronous ones concurrently.
    8. Wait for the fetches of step 4 at most JOBS_SWEEP_FETCH_WAIT after they started; a slower one goes on
       in its thread, and never holds the next sweep's polls.
    9. Run the sweep hooks (notifications: slow and stuck jobs, connections down).
    """
    from jobs.tasks import submit_job

    # 1.
    leased_until = _now() + timedelta(seconds=settings.JOBS_POLL_LEASE)
    due = claim_due_jobs(leased_until=leased_until)
    # 2.
    outcomes = [outcome for outcome in _run_concurrently([(poll, job) for job in due]) if outcome]
    # 3.
    record_still_running([o.still_running for o in outcomes if o.still_running], leased_until=leased_until)
    # 4.
    fetches = start_fetches([outcome.to_fetch for outcome in outcomes if outcome.to_fetch])
    fetch_deadline = time.monotonic() + settings.JOBS_SWEEP_FETCH_WAIT
    # 5.
    to_submit, sync_calls = claim_waiting_submissions()
    # 6.
    for pk in sync_calls:
        submit_job.delay(pk)
    # 7.
    _run_concurrently([(submit, pk) for pk in to_submit])
    # 8.
    wait(fetches, timeout=max(fetch_deadline - time.monotonic(), 0))
    # 9.
    hooks.sweep_hooks_run()
    return len(due) + len(to_submit)


def claim_waiting_submissions(now=None) -> tuple[list[int], list[int]]:
    """Claim queued jobs that their submit message has not reached after the grace period: a backlog, a
    lost message, or a refusal whose retry time has come. Returns (asynchronous, synchronous) job ids.

    In one transaction: lock them, skipping rows another sweep holds; push their submit_after forward by the
    lease (another sweep will not take them, and if this worker dies they are waiting again when the lease
    ends); commit. A submit message reaching the same job at the same time is harmless: submitting is a
    compare-and-set from queued, so the job is sent once.
    """
    now = now or _now()
    settle = now - timedelta(seconds=settings.JOBS_SUBMIT_GRACE)
    with transaction.atomic():
        waiting = list(
            Job.objects.select_for_update(skip_locked=True)
            .filter(state=S.QUEUED, created_at__lte=settle)
            .filter(Q(submit_after__isnull=True) | Q(submit_after__lte=now))
            .order_by("created_at")
            .values_list("pk", "async_flag")[: settings.JOBS_SWEEP_SUBMIT_BATCH]
        )
        if waiting:
            Job.objects.filter(pk__in=[pk for pk, _ in waiting], state=S.QUEUED).update(
                submit_after=now + timedelta(seconds=settings.JOBS_POLL_LEASE)
            )
    return [pk for pk, is_async in waiting if is_async], [pk for pk, is_async in waiting if not is_async]


def claim_due_jobs(now=None, *, leased_until=None) -> list[Job]:
    """Claim the pending jobs whose next poll is due, within each connection's poll budget; returns them
    with their connection, read in the claim's one SELECT.

    1. In one transaction, lock due pending jobs, oldest due first, skipping rows another sweep holds.
    2. Keep at most `poll_budget x sweep interval` per connection; the rest stay due for the next sweep.
    3. Push the kept jobs' next_poll_at forward to the end of the lease (`leased_until`, by default now plus
       JOBS_POLL_LEASE) and commit: another sweep will not take them, and if this worker dies they become due
       again when the lease ends.
    """
    now = now or _now()
    leased_until = leased_until or now + timedelta(seconds=settings.JOBS_POLL_LEASE)
    budgets = dict(Connection.objects.values_list("pk", "poll_budget"))
    with transaction.atomic():
        due = list(
            Job.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("connection")
            .defer("script_source")
            .filter(state=S.PENDING, next_poll_at__lte=now)
            .order_by("next_poll_at")[: settings.JOBS_SWEEP_BATCH]
        )
        taken: dict[int, int] = {}
        claimed = []
        for job in due:
            allowance = max(1, int(budgets.get(job.connection_id, 1) * max(settings.JOBS_SWEEP_INTERVAL, 1.0)))
            if taken.get(job.connection_id, 0) < allowance:
                taken[job.connection_id] = taken.get(job.connection_id, 0) + 1
                claimed.append(job)
        if claimed:
            Job.objects.filter(pk__in=[job.pk for job in claimed], state=S.PENDING).update(next_poll_at=leased_until)
    return claimed


def _run_concurrently(work: list[tuple]) -> list:
    """Run (step, argument) items on the sweep's threads; returns what the steps returned."""
    if not work:
        return []
    items = iter(work)
    lock = threading.Lock()
    drains = [_pool().submit(_drain, items, lock) for _ in range(min(settings.JOBS_SWEEP_THREADS, len(work)))]
    return [outcome for drain in drains for outcome in drain.result()]


def _drain(items, lock: threading.Lock) -> list:
    """Take the sweep's items one at a time until none is left, on one database connection; returns the
    steps' outcomes.

    The connection is closed when the sweep's work is done: pool threads outlive the sweep, and a connection
    kept per thread would hold JOBS_SWEEP_THREADS database connections per worker process between sweeps,
    while one opened per item would cost a connection set-up per poll.
    """
    outcomes = []
    try:
        while True:
            with lock:
                item = next(items, None)
            if item is None:
                return outcomes
            step, argument = item
            try:
                outcomes.append(step(argument))
            except Exception:  # one job's surprise must not stop the sweep; its lease makes it due again
                logger.exception("job %s: %s failed", getattr(argument, "pk", argument), step.__name__)
                # A database that went away leaves this connection broken: open a new one for the next item.
                connection.close_if_unusable_or_obsolete()
    finally:
        connection.close()


def record_still_running(rows: list[dict], *, leased_until=None) -> int:
    """Write the polls that found their jobs still running, in one statement (more only past the database's
    parameter limit), only for jobs still pending and, given `leased_until`, still under that lease: a job
    cancelled since its poll, or claimed again by another sweep once the lease ran out, is left as it is.
    Returns how many were written. A worker that dies before this has lost only the polls, which the lease
    repeats."""
    where = {"state": S.PENDING} | ({"next_poll_at": leased_until} if leased_until else {})
    written = 0
    columns = (*STILL_RUNNING_FIELDS, "poll_count")
    size = update_each_limit(len(columns))
    for start in range(0, len(rows), size):
        written += update_each(
            Job,
            rows[start : start + size],
            fields=STILL_RUNNING_FIELDS,
            add=("poll_count",),
            where=where,
        )
    return written


# What a "still running" answer writes (poll_count: added to).
STILL_RUNNING_FIELDS = (
    "next_poll_at",
    "last_polled_at",
    "oml_elapsed_seconds",
    "oml_last_running_at",
    "last_error",
    "poll_log",
)


def start_fetches(job_ids: list[int]) -> list[Future]:
    """Start fetching the results of jobs OML finished, on the fetch threads; the sweep waits for them at most
    JOBS_SWEEP_FETCH_WAIT, so that a slow or failing download never holds the next sweep's polls. One still
    going on then carries on in its thread; if the process dies first, the job stays `fetching` and the
    janitor fetches it again. Each fetch thread works through the list on one database connection, as the
    poll threads do."""
    if not job_ids:
        return []
    items = iter([(fetch, pk) for pk in job_ids])
    lock = threading.Lock()
    threads = min(len(job_ids), _pool_size("fetch"))
    return [_pool("fetch").submit(_drain, items, lock) for _ in range(threads)]


def _schedule(job: Job, now) -> timedelta:
    age = (now - (job.oml_accepted_at or job.created_at)).total_seconds()
    if strategy_of(job) == "fixed":
        return timedelta(seconds=settings.JOBS_POLL_FIXED_INTERVAL)
    expected = (
        polling.Expectation(job.expected_seconds, job.expected_spread or polling.MIN_SPREAD)
        if job.expected_seconds
        else None
    )
    until_deadline = (job.deadline_at - now).total_seconds() if job.deadline_at else None
    return timedelta(seconds=polling.next_delay(age=age, expected=expected, until_deadline=until_deadline))


def _logged(job: Job, *, sent, http_status: int | None, oml_status: str, elapsed=None, latency_ms=None) -> dict:
    """The job's poll log with this status request added (written by the UPDATE that records the poll)."""
    entry = polling.poll_log_entry(
        at=sent.timestamp(),
        http_status=http_status,
        oml_status=oml_status,
        elapsed_seconds=elapsed,
        latency_ms=latency_ms,
    )
    return polling.poll_log_append(
        job.poll_log, entry, first=settings.JOBS_POLL_LOG_FIRST, last=settings.JOBS_POLL_LOG_LAST
    )


@log_context()
def poll(job: Job) -> PollOutcome | None:
    """One status request for a job the sweep claimed (and read), and what follows from the answer.

    1. A cancellation asked for is carried out instead of the poll.
    2. The status request, outside any transaction; the time it is sent is kept (a 202 says OML was still
       running at some moment after it).
    3. No answer, or an error answer: a permanent one fails the job, a passing one is recorded as a poll.
    4. Still running (202): nothing is written here; the row returned (next poll time, when OML was last seen
       running, its elapsedTime, the poll log) is written with the sweep's others in one statement.
    5. Finished (302): -> fetching; the sweep fetches the result (start_fetches).
    6. Failed: a 500 is believed the second time in a row; then, or for any other failure, -> failed.
    The request's time, HTTP status, OML's status, elapsedTime and latency go to the job's poll log with
    whatever records the poll.
    """
    log_bind(job=job.uuid)
    # 1.
    if job.cancel_requested_at:
        cancel(job.pk, actor=_cancelled_by(job))
        return None
    # 2.
    sent = _now()
    try:
        status = _client(job).status(job.oml_job_url)
    except OMLError as exc:
        # 3.
        _poll_unanswered(job, sent, exc)
        return None
    now = _now()
    recorder.inc("omlpy_polls_total", status.requests_sent)
    log = _logged(
        job,
        sent=sent,
        http_status=status.http_status,
        oml_status=status.oml_status or (status.state if status.state == "pending" else status.message or status.state),
        elapsed=status.elapsed_seconds,
        latency_ms=status.latency_ms,
    )
    # 4.
    if status.state == "pending":
        return PollOutcome(
            still_running={
                "pk": job.pk,
                "next_poll_at": now + _schedule(job, now),
                "last_polled_at": now,
                "oml_elapsed_seconds": status.elapsed_seconds,
                "oml_last_running_at": sent,
                "last_error": "",
                "poll_log": log,
                "poll_count": status.requests_sent,
            }
        )
    counted = F("poll_count") + status.requests_sent
    # 5.
    if status.state == "finished":
        _observe_finish_seen(job, now)
        moved = job_transition(
            job_id=job.pk,
            to_state=S.FETCHING,
            expected=[S.PENDING],
            reason="OML finished the job",
            http_status=status.http_status,
            latency_ms=status.latency_ms,
            detail={"result_url": status.result_url},
            at=now,
            oml_finished_at=now,
            oml_result_url=status.result_url,
            poll_count=counted,
            last_polled_at=now,
            poll_log=log,
        )
        return PollOutcome(to_fetch=job.pk) if moved else None
    # 6. A 500 could be a passing fault of the server: believe it when it says so twice in a row.
    if status.http_status == 500 and job.last_error != STATUS_500_MARK:
        job_update_polling(
            job_id=job.pk,
            requests=status.requests_sent,
            next_poll_at=now + timedelta(seconds=settings.JOBS_POLL_INITIAL),
            last_polled_at=now,
            last_error=STATUS_500_MARK,
            poll_log=log,
        )
        return None
    fail(
        job.pk,
        S.PENDING,
        f"OML reported the job failed: {status.message}",
        error=status.message,
        http_status=status.http_status,
        latency_ms=status.latency_ms,
        at=now,
        poll_count=counted,
        last_polled_at=now,
        poll_log=log,
    )
    return None


def _poll_unanswered(job: Job, sent, exc: OMLError) -> None:
    """A status request that met an error: a permanent one fails the job; otherwise the poll is recorded
    with last_error saying OML did not answer (notifications' `stuck` and `connection_down` read it)."""
    recorder.inc("omlpy_polls_total")
    now = _now()
    log = _logged(job, sent=sent, http_status=exc.http_status, oml_status=exc.message, latency_ms=exc.latency_ms)
    if exc.permanent:
        fail(
            job.pk,
            S.PENDING,
            f"OML answered the status request with an error: {exc.message}",
            error=exc.message,
            http_status=exc.http_status,
            poll_count=F("poll_count") + 1,
            poll_log=log,
        )
        return
    job_update_polling(
        job_id=job.pk,
        requests=1,
        next_poll_at=now + _schedule(job, now),
        last_polled_at=now,
        poll_log=log,
        last_error=exc.message[:500],
    )


def _observe_finish_seen(job: Job, now) -> None:
    """Metrics of the poll that found a job finished, as jobs.selectors.timing defines them: its time in OML (the
    middle of its bounds: after the last 202, before this 302) and the detection lag (this 302 - the last
    202, an upper bound)."""
    job.oml_finished_at = now
    bounds = oml_bounds(job)
    if bounds is None:
        return
    recorder.observe("omlpy_job_oml_duration_seconds", bounds.estimate)
    if bounds.lag is not None:
        recorder.observe("omlpy_job_detection_lag_seconds", bounds.lag)


# --- Cancel -----------------------------------------------------------------------------------


@log_context()
def cancel(job_id: int, *, actor: str) -> None:
    """Delete the OML job (stopping it), then record the cancellation. A job still being submitted is left
    to the sweep, which carries out the request once OML has answered and the job URL is known."""
    job = Job.objects.select_related("connection").filter(pk=job_id).first()
    if job is None or job.is_terminal or job.state == S.SUBMITTING:
        return
    log_bind(job=job.uuid)
    http_status = None
    detail = {}
    if job.oml_job_url:
        try:
            http_status = _client(job).delete(job.oml_job_url)
        except OMLError as exc:
            detail["delete_error"] = exc.message
            http_status = exc.http_status
    job_transition(
        job_id=job.pk,
        to_state=S.CANCELLED,
        expected=[S.QUEUED, S.PENDING, S.FETCHING, S.RUNNING],
        reason=f"cancelled by {actor}",
        http_status=http_status,
        detail=detail,
    )


# --- Janitor ----------------------------------------------------------------------------------


def janitor() -> dict:
    """Resolve what nothing else will.

    1. Active jobs past their deadline -> timed_out (the OML job is deleted, best effort).
    2. `submitting` for longer than the submit deadline -> failed, "submission outcome unknown".
    3. `running` (sync) for longer than a call can take -> failed, the worker died during the call.
    4. `fetching` for a while -> fetched again; for longer than the fetch deadline -> failed.
    5. A cancellation asked for more than a few seconds ago is carried out (its message may be lost).
    (A `queued` job whose message was lost needs nothing here: the sweep submits waiting jobs.)
    """
    from jobs.tasks import fetch_result

    now = _now()
    counts = {"timed_out": 0, "submit_unknown": 0, "running_lost": 0, "refetched": 0, "cancelled": 0}
    # Cancellations asked for a while ago whose message was lost or whose worker died.
    asked_before = now - timedelta(seconds=CANCEL_GRACE)
    asked = Job.objects.filter(state__in=ACTIVE_STATES, cancel_requested_at__lt=asked_before)
    for job in asked.exclude(state=S.SUBMITTING):
        cancel(job.pk, actor=_cancelled_by(job))
        counts["cancelled"] += 1
    for job in Job.objects.filter(state__in=ACTIVE_STATES, deadline_at__lt=now):
        if job.oml_job_url:
            # The job is timed out either way; OML drops it after its own timeout.
            with contextlib.suppress(OMLError):
                _client(job).delete(job.oml_job_url)
        counts["timed_out"] += job_transition(
            job_id=job.pk,
            to_state=S.TIMED_OUT,
            expected=[job.state],
            reason="deadline passed without a result",
            detail={"deadline_at": job.deadline_at.isoformat()},
        )
    submit_cutoff = now - timedelta(seconds=settings.JOBS_SUBMIT_DEADLINE)
    for pk in Job.objects.filter(state=S.SUBMITTING, submitted_at__lt=submit_cutoff).values_list("pk", flat=True):
        counts["submit_unknown"] += fail(
            pk,
            S.SUBMITTING,
            "submission outcome unknown: the worker stopped while sending the job to OML",
            error="submission outcome unknown",
        )
    running_cutoff = now - timedelta(
        seconds=settings.OML_READ_TIMEOUT + settings.OML_CONNECT_TIMEOUT + settings.JOBS_SUBMIT_DEADLINE
    )
    for pk in Job.objects.filter(state=S.RUNNING, submitted_at__lt=running_cutoff).values_list("pk", flat=True):
        counts["running_lost"] += fail(
            pk,
            S.RUNNING,
            "outcome unknown: the worker stopped during the synchronous call",
            error="outcome unknown",
        )
    fetch_dead = now - timedelta(seconds=settings.JOBS_FETCH_DEADLINE)
    fetch_retry = now - timedelta(seconds=settings.JOBS_FETCH_RETRY_AFTER)
    for pk, finished in Job.objects.filter(state=S.FETCHING, oml_finished_at__lt=fetch_retry).values_list(
        "pk", "oml_finished_at"
    ):
        if finished < fetch_dead:
            fail(
                pk,
                S.FETCHING,
                "the result could not be fetched before the fetch deadline",
                error="result not fetched",
            )
        elif cache.add(f"refetch:{pk}", 1, timeout=settings.JOBS_FETCH_RETRY_AFTER):
            fetch_result.delay(pk)
            counts["refetched"] += 1
    if any(counts.values()):
        logger.info("janitor: %s", counts)
    return counts


CANCEL_GRACE = 5.0


def _cancelled_by(job: Job) -> str:
    """Who asked: the audit trail's cancel entry for the job names them."""
    from audit.models import AuditEntry

    entry = (
        AuditEntry.objects.filter(action="cancel", target_id=str(job.uuid))
        .order_by("-at")
        .only("actor_username")
        .first()
    )
    return entry.actor_username if entry and entry.actor_username else "request"
