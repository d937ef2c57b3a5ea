"""Retention: the purge removes exactly what the policies say, never a pinned job or the audit trail, twice in a
row changes nothing, and a purge killed midway leaves a consistent database."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, timedelta

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection as django_connection
from django.db.models import Count, Sum
from django.utils import timezone

from accounts.models import Membership, Team
from audit.services import audit_record, audit_verify_chain
from jobs.models import Job, JobResult, JobResultChunk, JobRollup, JobTally, JobTransition, RetentionPolicy
from jobs.services.pins import job_pin
from jobs.services.retention import purge
from jobs.services.rollups import COLUMNS as ROLLUP_COLUMNS
from jobs.services.tally import tally_rows
from jobs.states import TERMINAL_STATES, JobState
from jobs.worker import lifecycle
from metrics import recorder, store
from metrics.models import MetricCounter
from tests.results_support import finish_async, make_job, store_result
from tests.stack import ROOT, wait_for
from tests.stack import test_database_url as database_url

BODY = b'{"result": [1, 2, 3]}'


def old_job(
    owner, *, days: float, state=JobState.SUCCEEDED, body: bytes | None = BODY, chunk_size: int | None = None, **fields
):
    """A finished job `days` old (created, run and stored then), made through the services."""
    created = timezone.now() - timedelta(days=days)
    job = make_job(owner, **fields)
    if body is not None and state == JobState.SUCCEEDED:
        store_result(job, body, chunk_size=chunk_size)
        JobResult.objects.filter(job=job).update(stored_at=created + timedelta(seconds=12))
    return finish_async(job, created=created, queue=1, oml=10, fetch=1, state=state)


def _counters() -> dict[tuple[str, str], float]:
    return {
        (name, labels): value for name, labels, value in MetricCounter.objects.values_list("name", "labels", "value")
    }


def tally_matches_the_tables() -> bool:
    """The tally equals a recount of the jobs and results tables."""
    counted = Counter()
    sized = Counter()
    for state, connection_id, kind, team_id, n in (
        Job.objects.filter(state__in=sorted(TERMINAL_STATES))
        .values_list("state", "connection_id", "kind", "team_id")
        .annotate(n=Count("id"))
        .order_by()
    ):
        counted[(state, connection_id, kind, team_id)] += n
    for state, connection_id, kind, team_id, size in (
        JobResult.objects.values_list("job__state", "job__connection_id", "job__kind", "job__team_id")
        .annotate(size=Sum("size_bytes"))
        .order_by()
    ):
        sized[(state, connection_id, kind, team_id)] += size
    tallied = {
        (r.state, r.connection_id, r.kind, r.team_id): r
        for r in tally_rows(set(Team.objects.values_list("pk", flat=True)))
    }
    return {key: row.jobs for key, row in tallied.items() if row.jobs} == dict(counted) and {
        key: row.result_bytes for key, row in tallied.items() if row.result_bytes
    } == dict(sized)


@pytest.fixture
def policies(settings):
    settings.RETENTION_RESULT_DAYS = 30
    settings.RETENTION_JOB_DAYS = 90
    settings.RETENTION_PURGE_BATCH = 2
    settings.RETENTION_PURGE_PAUSE = 0
    settings.JOBS_POLL_STRATEGY = "learned"
    forever = Team.objects.create(name="Keep forever")
    short = Team.objects.create(name="Short")
    RetentionPolicy.objects.create(team=forever, result_days=0, job_days=0)
    RetentionPolicy.objects.create(team=short, result_days=1, job_days=10)
    return {"forever": forever, "short": short}


@pytest.mark.django_db(transaction=True)
def test_a_purge_over_mixed_ages_and_pins_removes_exactly_the_expected_ones_and_a_second_changes_nothing(
    policies, make_user, client
):
    # What earlier tests of this process counted and never flushed is not this test's.
    recorder.drain()
    owner = make_user("owner")
    keeper = make_user("keeper")
    Membership.objects.create(user=keeper, team=policies["forever"], role=Membership.Role.ANALYST)
    shorty = make_user("shorty")
    Membership.objects.create(user=shorty, team=policies["short"], role=Membership.Role.ANALYST)
    jobs = {
        "fresh": old_job(owner, days=5),
        "mid": old_job(owner, days=45),
        "old": old_job(owner, days=120),
        "old_failed": old_job(owner, days=120, state=JobState.FAILED),
        "old_pinned": old_job(owner, days=120),
        "mid_pinned": old_job(owner, days=45),
        "forever_old": old_job(keeper, days=400, team=policies["forever"]),
        "short_mid": old_job(shorty, days=5, team=policies["short"]),
        "short_old": old_job(shorty, days=20, team=policies["short"]),
        # Three runs of one script, all old: learned polling must still know it after they are gone.
        **{f"learned_{i}": old_job(owner, days=100 + i, script="learned_script") for i in range(3)},
    }
    queued_long_ago = make_job(owner)
    Job.objects.filter(pk=queued_long_ago.pk).update(created_at=timezone.now() - timedelta(days=300))
    child = old_job(owner, days=2, parent=jobs["old"])
    for name in ("old_pinned", "mid_pinned"):
        job_pin(job=jobs[name], actor=owner, reason="legal hold")
    audit_record(action="submit", actor=owner, target_type="job", target_id=str(jobs["old"].uuid))
    store.flush()
    counted_before = _counters()
    transitions_counted = sum(
        value for (name, _), value in counted_before.items() if name == "omlpy_job_transitions_total"
    )
    assert transitions_counted == JobTransition.objects.count()
    assert tally_matches_the_tables()

    out = io.StringIO()
    call_command("jobs_purge", "--dry-run", stdout=out)
    expected_results = {"mid", "short_mid"}
    expected_jobs = {"old", "old_failed", "short_old", "learned_0", "learned_1", "learned_2"}
    # Results past their retention go first (those of rows about to go too: five, the failed job had none).
    assert (
        out.getvalue()
        .strip()
        .endswith(f"Would remove 7 result bodies ({7 * len(BODY)} bytes) and {len(expected_jobs)} jobs.")
    ), out.getvalue()
    assert Job.objects.count() == len(jobs) + 2  # the dry run removed nothing

    report = purge()
    assert (report.results, report.jobs, report.result_bytes) == (7, len(expected_jobs), 7 * len(BODY))
    assert report.batches >= 4  # two per batch: the work really was cut in batches

    left = set(Job.objects.values_list("uuid", flat=True))
    for name, job in jobs.items():
        assert (job.uuid in left) == (name not in expected_jobs), name
    assert queued_long_ago.uuid in left
    child.refresh_from_db()
    assert child.parent_id is None  # its parent was removed, the re-run stays
    with_result = set(JobResult.objects.values_list("job__uuid", flat=True))
    for name in ("fresh", "old_pinned", "mid_pinned", "forever_old"):
        assert jobs[name].uuid in with_result, name
    for name in expected_results:
        job = Job.objects.get(pk=jobs[name].pk)
        assert job.uuid not in with_result
        assert job.result_purged_at is not None
        assert JobTransition.objects.filter(job=job).count() == 4  # the row and its timeline stay
    assert not JobResultChunk.objects.exclude(result__in=JobResult.objects.all()).exists()
    assert not JobTransition.objects.filter(job__isnull=True).exists()
    assert tally_matches_the_tables()

    # The audit trail is whole, and still names the purged job.
    assert audit_verify_chain().ok
    call_command("audit_verify", stdout=io.StringIO())
    from audit.models import AuditEntry

    assert AuditEntry.objects.filter(target_id=str(jobs["old"].uuid), action="submit").exists()

    # Counters never go down with the rows: transitions counted stay as they were; the purge is counted.
    store.flush()
    counted_after = _counters()
    assert (
        sum(v for (name, _), v in counted_after.items() if name == "omlpy_job_transitions_total") == transitions_counted
    )
    assert counted_after[("omlpy_purged_total", '{"what":"jobs"}')] == len(expected_jobs)

    # Learned polling still knows the script whose every run was purged.
    new = make_job(owner, script="learned_script")
    expected = lifecycle.expectation_for(Job.objects.select_related("connection").get(pk=new.pk))
    assert expected is not None
    assert expected.median == pytest.approx(10, rel=0.01)

    # Twice in a row changes nothing.
    snapshot = (
        set(Job.objects.values_list("pk", "result_purged_at")),
        set(JobResult.objects.values_list("pk", flat=True)),
        set(JobTally.objects.values_list("state", "connection_id", "kind", "team_key", "jobs", "result_bytes")),
    )
    again = purge()
    assert (again.results, again.jobs) == (0, 0)
    assert snapshot == (
        set(Job.objects.values_list("pk", "result_purged_at")),
        set(JobResult.objects.values_list("pk", flat=True)),
        set(JobTally.objects.values_list("state", "connection_id", "kind", "team_key", "jobs", "result_bytes")),
    )

    # The job page says so, and its downloads answer 410 Gone.
    client.force_login(owner)
    mid = jobs["mid"]
    assert "removed by retention" in client.get(f"/jobs/{mid.uuid}/").content.decode()
    assert "Result removed by retention" in client.get(f"/jobs/{mid.uuid}/result/").content.decode()
    for path in (f"/jobs/{mid.uuid}/result.csv", f"/jobs/{mid.uuid}/result.json", f"/jobs/{mid.uuid}/result/raw/"):
        assert client.get(path).status_code == 410, path
    api = client.get(f"/api/v1/jobs/{mid.uuid}/result")
    assert api.status_code == 410
    assert "retention" in api.json()["detail"]
    assert client.get(f"/api/v1/jobs/{mid.uuid}").json()["result_purged_at"] is not None


def _consistent() -> list[str]:
    """What a purge, whole or cut off anywhere, must leave true of the tables."""
    problems = []
    job_ids = set(Job.objects.values_list("pk", flat=True))
    for job in Job.objects.filter(state=JobState.SUCCEEDED):
        result = JobResult.objects.filter(job=job).first()
        if result is None and job.result_purged_at is None:
            problems.append(f"{job.pk}: no result and not marked purged")
        if result is not None and JobResultChunk.objects.filter(result=result).count() != result.chunk_count:
            problems.append(f"{job.pk}: a result with missing chunks")
    if set(JobResult.objects.values_list("job_id", flat=True)) - job_ids:
        problems.append("results without their job row")
    if set(JobTransition.objects.values_list("job_id", flat=True)) - job_ids:
        problems.append("transitions without their job row")
    if JobResultChunk.objects.exclude(result__in=JobResult.objects.all()).exists():
        problems.append("chunks without a result")
    if not tally_matches_the_tables():
        problems.append("the tally differs from the tables")
    return problems


def _rollup_key(values: tuple) -> tuple:
    job = dict(zip(ROLLUP_COLUMNS, values, strict=True))
    hour = job["created_at"].astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return (hour, job["owner_id"], job["team_id"], job["connection_id"], job["script_name"], job["kind"], job["state"])


def jobs_per_rollup() -> Counter:
    """Jobs per analytics group in the rollups: finished jobs are rolled up as they end (the live part) and a
    purge moves them to the purged part, so each job counts once before, during and after a purge. The live
    part must say what the remaining finished rows say."""
    live, counted = Counter(), Counter()
    for row in JobRollup.objects.values_list(
        "hour", "owner_id", "team_id", "connection_id", "script_name", "kind", "state", "jobs", "purged"
    ):
        key = (row[0].astimezone(UTC), *row[1:7])
        counted[key] += row[7]
        if not row[8]:
            live[key] += row[7]
    rows = Counter(
        _rollup_key(values) for values in Job.objects.filter(state__in=TERMINAL_STATES).values_list(*ROLLUP_COLUMNS)
    )
    assert +live == +rows, "the live rollups disagree with the finished job rows"
    return counted


def _pinned_rows(pinned: list[Job]) -> dict:
    ids = [job.pk for job in pinned]
    return {
        "jobs": set(Job.objects.filter(pk__in=ids).values_list("pk", "state", "result_purged_at")),
        "transitions": set(JobTransition.objects.filter(job_id__in=ids).values_list("pk", flat=True)),
        "results": set(JobResult.objects.filter(job_id__in=ids).values_list("pk", "sha256", "chunk_count")),
        "chunks": set(JobResultChunk.objects.filter(result__job_id__in=ids).values_list("pk", flat=True)),
    }


HOLD_SQLITE_WRITES = """
import sqlite3, sys
held = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
held.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.read()
held.rollback()
held.close()
"""


@contextlib.contextmanager
def writes_held():
    """Hold the tally's writes from another connection, so that a purge's batch stops at its first write to it.

    PostgreSQL: a SHARE lock on the tally table; the batch has deleted its rows (uncommitted) when it waits
    to take them from the tally. SQLite: the database's write lock; the batch waits at its first write.
    """
    url = database_url()
    if url.startswith("sqlite"):
        # In a process of its own: a second connection opened and closed in this process would drop the locks
        # SQLite holds on the file for the suite's own connection (POSIX locks belong to the process).
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_SQLITE_WRITES, url.removeprefix("sqlite:///")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout.readline().strip() == "held"
            yield holder
        finally:
            holder.stdin.close()
            holder.wait(timeout=30)
        return
    held = psycopg.connect(url)
    held.execute(f"LOCK TABLE {JobTally._meta.db_table} IN SHARE MODE")
    try:
        yield held
    finally:
        held.rollback()
        held.close()


def _purge_waiting_inside_its_transaction(backend_pids: set[int]) -> int | None:
    """PostgreSQL: the pid of the purge's backend, once it waits for the tally inside a batch that has already
    deleted (or marked) rows; None until then."""
    with django_connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.pid FROM pg_stat_activity a WHERE a.datname = current_database() AND a.wait_event_type = "
            "'Lock' AND a.query ILIKE %s AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND "
            "l.mode = 'RowExclusiveLock' AND l.relation IN (%s::regclass, %s::regclass))",
            [f"%{JobTally._meta.db_table}%", Job._meta.db_table, JobResultChunk._meta.db_table],
        )
        pids = {row[0] for row in cursor.fetchall()} - backend_pids
    return next(iter(pids), None)


def _backend_gone(pid: int) -> bool:
    with django_connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone() is None


def kill_purge_while_it_deletes(progress) -> None:
    """Start `manage.py jobs_purge` (one job per batch, throttled by RETENTION_PURGE_PAUSE), wait until
    `progress()` says it has committed some batches, stop its next batch at a write, and SIGKILL it there."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "RETENTION_RESULT_DAYS": "30",
        "RETENTION_JOB_DAYS": "90",
        "RETENTION_PURGE_BATCH": "1",
        "RETENTION_PURGE_PAUSE": "0.2",
    }
    postgres = django_connection.vendor == "postgresql"
    ours = set()
    if postgres:
        with django_connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            ours = {row[0] for row in cursor.fetchall()}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "jobs_purge"], cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    backend = None
    try:
        wait_for(progress, timeout=30, interval=0.02, what="the purge to commit a few batches")
        with writes_held():
            if postgres:
                backend = wait_for(
                    lambda: _purge_waiting_inside_its_transaction(ours), timeout=10, interval=0.02,
                    what="the purge's next batch to wait for the tally after deleting",
                )  # fmt: skip
            else:
                # A batch already writing holds the write lock until it commits (writes_held waited for it); the
                # next one, a pause later, reads its candidates and then waits at its first write.
                time.sleep(0.6)
            assert proc.poll() is None, "the purge ended before it was caught midway"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    if backend is not None:
        # The server rolls the killed client's transaction back when it finds the client gone.
        wait_for(lambda: _backend_gone(backend), timeout=10, what="the killed purge's backend to end")


@pytest.mark.django_db(transaction=True)
def test_a_purge_killed_while_it_deletes_leaves_a_consistent_database_and_the_next_one_finishes_it(make_user, settings):
    owner = make_user("owner")
    # Three chunks each: a batch that died half-way through a result would show.
    old = [old_job(owner, days=400 - i, body=b"x" * 3000, chunk_size=1000) for i in range(10)]
    old += [old_job(owner, days=300, state=state) for state in (JobState.FAILED, JobState.TIMED_OUT)]
    fresh = [old_job(owner, days=2, body=b"y" * 3000, chunk_size=1000) for _ in range(2)]
    pinned = [old_job(owner, days=400, body=b"z" * 3000, chunk_size=1000), old_job(owner, days=60)]
    for job in pinned:
        job_pin(job=job, actor=owner, reason="legal hold")
    audit_record(action="submit", actor=owner, target_type="job", target_id=str(old[0].uuid))
    pinned_before = _pinned_rows(pinned)
    groups_before = jobs_per_rollup()
    assert _consistent() == []

    def check() -> None:
        assert _consistent() == []
        assert jobs_per_rollup() == groups_before
        assert _pinned_rows(pinned) == pinned_before
        assert audit_verify_chain().ok
        call_command("audit_verify", stdout=io.StringIO())

    # Killed among the result bodies (the batch had deleted chunks and results and marked its job), then
    # among the job rows (the batch had added its job to the rollups and deleted it with its timeline).
    results_with_old_bodies = JobResult.objects.filter(job__in=old).count()
    kill_purge_while_it_deletes(lambda: JobResult.objects.filter(job__in=old).count() <= results_with_old_bodies - 2)
    left_results = JobResult.objects.filter(job__in=old).count()
    assert 0 < left_results < results_with_old_bodies, "the purge was not caught among the result bodies"
    assert Job.objects.count() == len(old) + len(fresh) + len(pinned)
    check()

    kill_purge_while_it_deletes(lambda: Job.objects.filter(pk__in=[job.pk for job in old]).count() <= len(old) - 2)
    left_jobs = Job.objects.filter(pk__in=[job.pk for job in old]).count()
    assert 0 < left_jobs <= len(old) - 2, "the purge was not caught among the job rows"
    check()

    # A second purge finishes the work; a third changes nothing.
    settings.RETENTION_RESULT_DAYS, settings.RETENTION_JOB_DAYS = 30, 90
    settings.RETENTION_PURGE_BATCH, settings.RETENTION_PURGE_PAUSE = 1, 0
    second = purge()
    assert second.jobs == left_jobs
    assert set(Job.objects.values_list("pk", flat=True)) == {job.pk for job in fresh + pinned}
    assert JobResult.objects.count() == len(fresh) + len(pinned)
    check()

    def snapshot() -> tuple:
        return (
            set(Job.objects.values_list("pk", "result_purged_at")),
            set(JobResult.objects.values_list("pk", flat=True)),
            set(JobResultChunk.objects.values_list("pk", flat=True)),
            set(JobTally.objects.values_list("state", "connection_id", "kind", "team_key", "jobs", "result_bytes")),
            set(JobRollup.objects.values_list("pk", "jobs")),
        )

    before_third = snapshot()
    third = purge()
    assert (third.results, third.jobs, third.batches) == (0, 0, 0)
    assert snapshot() == before_third
    check()


@pytest.mark.django_db
def test_analytics_say_the_same_after_the_jobs_they_count_are_purged(client, analyst, settings):
    from datetime import UTC, datetime

    settings.RETENTION_RESULT_DAYS, settings.RETENTION_JOB_DAYS = 30, 90
    settings.RETENTION_PURGE_PAUSE = 0
    day1, day2 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC), datetime(2026, 3, 11, 9, 0, tzinfo=UTC)
    timings = [(1, 8, 1), (2, 16, 2), (3, 24, 3), (4, 32, 4), (10, 80, 10)]
    made = [
        finish_async(make_job(analyst, script="alpha"), created=day1 + timedelta(minutes=i), queue=q, oml=o, fetch=f)
        for i, (q, o, f) in enumerate(timings)
    ]
    finish_async(make_job(analyst, script="beta"), created=day2, queue=1, oml=5, fetch=1)
    for state in (JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED):
        finish_async(make_job(analyst, script="alpha"), created=day1, queue=1, oml=3, fetch=0, state=state)
    # One job stays, pinned: the figures then come from rows and rollups together.
    job_pin(job=made[2], actor=analyst, reason="kept")
    client.force_login(analyst)
    window = "created_from=2026-03-10&created_to=2026-03-11"

    def figures() -> dict:
        return {
            chart: client.get(f"/analytics/{chart}.json?{window}").json() for chart in ("trend", "phases", "outcomes")
        }

    before = figures()
    report = purge()
    assert report.jobs == 8
    assert Job.objects.count() == 1
    after = figures()
    assert after["outcomes"] == before["outcomes"]
    assert after["phases"]["days"] == before["phases"]["days"]
    assert after["phases"]["jobs"] == before["phases"]["jobs"] == [5, 1]
    for phase in ("queue", "oml", "fetch"):
        assert after["phases"][phase] == pytest.approx(before["phases"][phase])
    assert after["trend"]["days"] == before["trend"]["days"]
    series_before = {(s["script"], s["percentile"]): s["values"] for s in before["trend"]["series"]}
    series_after = {(s["script"], s["percentile"]): s["values"] for s in after["trend"]["series"]}
    assert series_before[("alpha", "p50")] == [30.0, None]
    assert series_after.keys() == series_before.keys()
    for key, values in series_before.items():
        for old, new in zip(values, series_after[key], strict=True):
            assert (old is None and new is None) or new == pytest.approx(old, rel=0.03), key
    assert "alpha" in {row[0] for row in after["trend"]["rows"]}  # the table's rows, as the page draws them
    assert not before["trend"]["approximate"]
    assert after["trend"]["approximate"]  # purged jobs: read from buckets
    assert client.get(f"/analytics/?{window}").status_code == 200
