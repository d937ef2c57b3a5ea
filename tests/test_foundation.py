"""The foundation: the single state writer, secrets at rest, a real worker on each broker, health."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections, connection

from jobs.models import Connection, Job, JobTransition
from jobs.services.jobs import connection_save, job_transition
from jobs.states import ALLOWED_MOVES, JobKind, JobState
from tests.stack import ROOT, Stack, wait_for


def _make_job(owner, conn, state=JobState.QUEUED) -> Job:
    job = Job.objects.create(
        owner=owner, connection=conn, kind=JobKind.DO_EVAL, script_name="return_df", async_flag=True
    )
    if state != JobState.QUEUED:
        # Arrange the starting state directly: this is test set-up, not a move under test.
        extra = {"next_poll_at": job.created_at} if state == JobState.PENDING else {}
        if state in (JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED):
            extra["finished_at"] = job.created_at
        Job.objects.filter(pk=job.pk).update(state=state, **extra)
    return job


@pytest.fixture
def conn(db):
    return connection_save(name="c", base_url="http://127.0.0.1:9", username="OMLUSER", password="s3cret-pass")


MOVES = [(src, dst) for src in JobState.values for dst in JobState.values]


@pytest.mark.parametrize(("source", "target"), MOVES)
def test_state_table_allows_listed_moves_and_refuses_the_rest(analyst, conn, source, target):
    job = _make_job(analyst, conn, source)
    extra = {"next_poll_at": job.created_at} if target == JobState.PENDING else {}
    moved = job_transition(job_id=job.pk, to_state=target, reason="test", **extra)
    job.refresh_from_db()
    transitions = list(JobTransition.objects.filter(job=job))
    if target in ALLOWED_MOVES[source]:
        assert moved is True
        assert job.state == target
        assert [(t.from_state, t.to_state) for t in transitions] == [(source, target)]
    else:
        assert moved is False
        assert job.state == source
        assert transitions == []


def test_transition_to_a_terminal_state_sets_finished_at_and_clears_the_next_poll(analyst, conn):
    job = _make_job(analyst, conn, JobState.PENDING)
    assert job_transition(job_id=job.pk, to_state=JobState.FAILED, reason="server said no", http_status=400)
    job.refresh_from_db()
    assert job.finished_at is not None
    assert job.next_poll_at is None
    row = job.transitions.get()
    assert (row.reason, row.http_status) == ("server said no", 400)


def test_expected_states_narrow_the_move(analyst, conn):
    job = _make_job(analyst, conn, JobState.PENDING)
    assert not job_transition(job_id=job.pk, to_state=JobState.CANCELLED, reason="x", expected=[JobState.QUEUED])
    job.refresh_from_db()
    assert job.state == JobState.PENDING
    assert not job.transitions.exists()


def test_the_database_refuses_a_pending_job_without_a_next_poll(analyst, conn):
    from django.db import IntegrityError, transaction

    job = _make_job(analyst, conn, JobState.SUBMITTING)
    with pytest.raises(IntegrityError), transaction.atomic():
        job_transition(job_id=job.pk, to_state=JobState.PENDING, reason="missing next poll")
    job.refresh_from_db()
    assert job.state == JobState.SUBMITTING
    assert not job.transitions.exists()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_movers_one_wins_and_one_transition_is_written(analyst, conn):
    # Each pair of moves excludes the other: the same move twice, or two different endings.
    races = [(JobState.FETCHING, JobState.FETCHING), (JobState.FAILED, JobState.CANCELLED)] * 10
    for first, second in races:
        job = _make_job(analyst, conn, JobState.PENDING)
        barrier = threading.Barrier(2)
        results: list[bool] = []

        def mover(job_id=job.pk, target=None, barrier=barrier, results=results):
            try:
                barrier.wait()
                results.append(job_transition(job_id=job_id, to_state=target, reason=f"racer {target}"))
            finally:
                close_old_connections()
                connection.close()

        threads = [
            threading.Thread(target=mover, kwargs={"target": first}),
            threading.Thread(target=mover, kwargs={"target": second}),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == [False, True]
        assert JobTransition.objects.filter(job=job).count() == 1
        job.refresh_from_db()
        assert job.state == JobTransition.objects.get(job=job).to_state


READ_RAW = """
import sqlite3, sys
from pathlib import Path
path, secret = Path(sys.argv[1]), sys.argv[2]
wal = Path(f"{path}-wal")
raw = path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
print("file:present" if secret.encode() in raw else "file:absent")
rows = sqlite3.connect(path).execute("SELECT * FROM jobs_connection").fetchall()
print("rows:present" if secret in repr(rows) else "rows:absent")
"""


@pytest.mark.django_db(transaction=True)
def test_connection_password_is_never_stored_in_plain_text():
    secret = f"plain-{uuid.uuid4().hex}"
    saved = connection_save(name="secret test", base_url="http://127.0.0.1:9", username="U", password=secret)
    assert Connection.objects.get(pk=saved.pk).get_password() == secret
    if connection.vendor == "sqlite":
        # Move everything out of the write-ahead log into the file, then read the file's bytes. The reading runs
        # in a process of its own: closing a descriptor of the database file in this process would drop the
        # locks SQLite holds on it for the suite's own connection.
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        path = Path(settings.DATABASES["default"]["NAME"])
        found = subprocess.run(
            [sys.executable, "-c", READ_RAW, str(path), secret], capture_output=True, text=True, check=True
        )
        assert found.stdout.split() == ["file:absent", "rows:absent"], found.stdout
    else:
        with connection.cursor() as cursor:
            cursor.execute("SELECT t::text FROM jobs_connection t")
            dump = " ".join(row[0] for row in cursor.fetchall())
        assert secret not in dump
        assert saved.password_encrypted in dump


BROKERS = {
    "filesystem": "atomicfs://",
    "redis": "redis://127.0.0.1:6379/15",
}


@pytest.mark.parametrize("broker", sorted(BROKERS))
@pytest.mark.django_db(transaction=True)
def test_a_worker_started_by_the_suite_runs_a_task(broker, tmp_path):
    queue = f"foundation-{uuid.uuid4().hex[:8]}"
    stack = Stack(log_dir=tmp_path, env={"CELERY_BROKER_URL": BROKERS[broker], "CELERY_QUEUE": queue})
    token = uuid.uuid4().hex
    try:
        stack.start_worker(beat=False, concurrency=1)
        # The message is sent as the web process sends it: through the project's Celery app, configured
        # from the same environment as the worker.
        sender = f"import django; django.setup(); from jobs.tasks import heartbeat; heartbeat.delay({token!r})"
        subprocess.run([sys.executable, "-c", sender], cwd=ROOT, env=stack.env, check=True, timeout=60)
        stamp = wait_for(lambda: cache.get(f"worker-heartbeat:{token}"), timeout=60, what=f"heartbeat via {broker}")
        assert stamp.startswith("20")
    finally:
        stack.stop()


@pytest.mark.django_db(transaction=True)
def test_healthz_answers_200_when_database_and_broker_answer(stack):
    response = requests.get(stack.url("/healthz"), timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert {key: body[key] for key in ("status", "checks")} == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok"},
    }
    # The stack's worker sweeps every half second: its last completed sweep is recent.
    wait_for(lambda: requests.get(stack.url("/healthz"), timeout=10).json()["sweep_age_seconds"] is not None)
    assert 0 <= requests.get(stack.url("/healthz"), timeout=10).json()["sweep_age_seconds"] < 60


@pytest.mark.django_db(transaction=True)
def test_healthz_answers_503_naming_the_broker_when_it_is_unreachable(tmp_path):
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    stack = Stack(log_dir=tmp_path, env={"CELERY_BROKER_URL": "redis://127.0.0.1:1/0"})
    try:
        stack.start_web()
        response = requests.get(stack.url("/healthz"), timeout=30)
    finally:
        stack.stop()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("failed")


def test_login_page_and_signed_in_home(client, analyst):
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert b"Sign in" in page.content
    assert client.get("/").status_code == 302
    client.force_login(analyst)
    home = client.get("/", follow=True)
    assert home.status_code == 200
    assert b"analyst" in home.content
