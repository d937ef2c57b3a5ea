"""Jobs driven end to end: a real Celery worker, the embedded engine over HTTP, the test database."""

from __future__ import annotations

import json
import signal
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from jobs import tasks
from jobs.models import Job, JobTransition
from jobs.services.jobs import job_create, result_read_all
from jobs.services.specs import parse_job_request
from jobs.states import TERMINAL_STATES, JobState
from omlengine.models import EngineCall, EngineJob
from tests.stack import Stack, wait_for

CALLS = {
    "do_eval": {"script": "return_df", "parameters": {"num": 5, "scale": 2}},
    "table_apply": {"script": "my_predict", "input": "select * from IRIS"},
    "row_apply": {
        "script": "group_count",
        "input": "select * from IRIS",
        "rows": 50,
        "parameters": {"oml_input_type": "pandas.DataFrame"},
    },
    "group_apply": {
        "script": "group_count",
        "input": "select * from IRIS",
        "groupBy": "Species",
        "orderBy": "Sepal_Length",
        "parameters": {"oml_input_type": "pandas.DataFrame"},
    },
    "index_apply": {"script": "compute_random_mean", "times": 4},
}


def submit(owner, **request) -> Job:
    return job_create(owner=owner, spec=parse_job_request(request))


def wait_terminal(job: Job, timeout: float = 90) -> Job:
    def ended():
        job.refresh_from_db()
        return job.state in TERMINAL_STATES

    wait_for(ended, timeout=timeout, what=f"job {job.uuid} to end (last state {job.state})")
    return job


def engine_token(base_url: str) -> str:
    answer = requests.post(
        f"{base_url}/omlusers/api/oauth2/v1/token",
        json={"grant_type": "password", "username": "OMLUSER", "password": "omluser"},
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json()["accessToken"]


def direct_call(base_url: str, kind: str, request: dict) -> object:
    """The same call made straight to the engine, synchronously."""
    body = {key: value for key, value in request.items() if key != "script"}
    if "parameters" in body:
        body["parameters"] = json.dumps(body["parameters"])
    answer = requests.post(
        f"{base_url}/oml/api/py-scripts/v2/{kind.replace('_', '-')}/{request['script']}",
        json=body,
        headers={"Authorization": f"Bearer {engine_token(base_url)}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.parametrize("async_flag", [True, False], ids=["async", "sync"])
def test_every_call_kind_succeeds_and_stores_what_the_engine_returns(live, analyst, async_flag):
    jobs = {kind: submit(analyst, kind=kind, asyncFlag=async_flag, **call) for kind, call in CALLS.items()}
    for kind, job in jobs.items():
        wait_terminal(job)
        assert job.state == JobState.SUCCEEDED, f"{kind}: {job.last_error}"
        stored = json.loads(result_read_all(job.result))
        assert stored == direct_call(live.base_url, kind, CALLS[kind]), kind


def test_an_async_job_walks_the_documented_states_and_counts_its_polls_like_the_engine(live, analyst):
    job = wait_terminal(submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 3}))
    assert job.state == JobState.SUCCEEDED
    moves = list(JobTransition.objects.filter(job=job).order_by("at", "id"))
    assert [(m.from_state, m.to_state) for m in moves] == [
        ("queued", "submitting"),
        ("submitting", "pending"),
        ("pending", "fetching"),
        ("fetching", "succeeded"),
    ]
    stamps = [m.at for m in moves]
    assert stamps == sorted(stamps)
    assert job.created_at <= job.submitted_at <= job.oml_accepted_at <= job.oml_finished_at
    assert job.oml_finished_at <= job.result_fetched_at <= job.finished_at
    engine_job = EngineJob.objects.get(pk=job.oml_job_id)
    assert job.poll_count >= 2
    assert job.poll_count == engine_job.status_requests
    assert moves[1].http_status == 201
    assert moves[2].http_status == 302


def test_a_script_error_fails_the_job_with_the_servers_message(live, analyst):
    job = wait_terminal(submit(analyst, kind="do_eval", script="fail_always"))
    assert job.state == JobState.FAILED
    engine_job = EngineJob.objects.get(pk=job.oml_job_id)
    assert engine_job.error_message
    assert job.last_error == engine_job.error_message
    assert JobTransition.objects.filter(job=job, to_state=JobState.FAILED).get().http_status == 400


def test_a_500_on_the_status_url_fails_the_job(live, analyst):
    job = submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 30})
    wait_for(lambda: Job.objects.get(pk=job.pk).state == JobState.PENDING, what="pending")
    job.refresh_from_db()
    # The job disappears behind the dashboard's back: OML answers 500 "job not found" on its status URL.
    EngineJob.objects.filter(pk=job.oml_job_id).delete()
    wait_terminal(job)
    assert job.state == JobState.FAILED
    failure = JobTransition.objects.get(job=job, to_state=JobState.FAILED)
    assert failure.http_status == 500
    assert "not found" in job.last_error.lower()


def test_a_job_past_its_deadline_times_out(live, analyst):
    job = submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 600})
    wait_for(lambda: Job.objects.get(pk=job.pk).state == JobState.PENDING, what="pending")
    Job.objects.filter(pk=job.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))
    wait_terminal(job)
    assert job.state == JobState.TIMED_OUT
    assert JobTransition.objects.get(job=job, to_state=JobState.TIMED_OUT).reason.startswith("deadline passed")


def test_cancel_deletes_the_engine_job_and_ends_cancelled(live, analyst):
    from jobs.services.jobs import job_cancel

    job = submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 600})
    wait_for(lambda: Job.objects.get(pk=job.pk).state == JobState.PENDING, what="pending")
    job.refresh_from_db()
    assert job_cancel(job=job, actor=analyst)
    wait_terminal(job)
    assert job.state == JobState.CANCELLED
    assert EngineJob.objects.get(pk=job.oml_job_id).state == EngineJob.State.DELETED
    answer = requests.get(
        job.oml_job_url, headers={"Authorization": f"Bearer {engine_token(live.base_url)}"}, timeout=10
    )
    assert answer.status_code == 500


def test_a_queued_job_cancels_at_once_without_calling_oml(db, analyst):
    from jobs.services.jobs import connection_save, job_cancel

    unused = connection_save(name="unused", base_url="http://127.0.0.1:9", username="U", password="p")
    # A row with no submit message sent: a job OML has never seen.
    job = Job.objects.create(owner=analyst, connection=unused, kind="do_eval", script_name="return_df")
    assert job_cancel(job=job, actor=analyst)
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED
    assert [(t.from_state, t.to_state) for t in job.transitions.all()] == [("queued", "cancelled")]


@pytest.mark.django_db(transaction=True)
def test_a_cancellation_whose_job_update_fails_leaves_no_audit_entry_and_no_request(analyst):
    from django.db import OperationalError, connection

    from audit.models import AuditEntry
    from jobs.services.jobs import connection_save, job_cancel

    unused = connection_save(name="unused", base_url="http://127.0.0.1:9", username="U", password="p")
    # A job OML accepted: cancelling it records the request on the row for a worker to carry out.
    job = Job.objects.create(
        owner=analyst,
        connection=unused,
        kind="do_eval",
        script_name="return_df",
        state=JobState.PENDING,
        next_poll_at=timezone.now() + timedelta(minutes=5),
    )
    before = AuditEntry.objects.count()

    def refuse_the_request(execute, sql, params, many, context):
        # The database refusing the write that records the request (a lost connection, say).
        if sql.startswith('UPDATE "jobs_job"') and "cancel_requested_at" in sql:
            raise OperationalError("the database went away")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse_the_request), pytest.raises(OperationalError):
        job_cancel(job=job, actor=analyst)

    job.refresh_from_db()
    assert job.state == JobState.PENDING
    assert job.cancel_requested_at is None
    assert AuditEntry.objects.count() == before

    # Without the fault, the audit entry, the request and the poll made due at once are written together.
    assert job_cancel(job=job, actor=analyst)
    job.refresh_from_db()
    assert job.cancel_requested_at is not None
    assert job.next_poll_at == job.cancel_requested_at
    assert AuditEntry.objects.filter(action="cancel", target_id=str(job.uuid)).count() == 1


def test_a_submit_message_delivered_twice_posts_once(live, analyst):
    job = submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 1})
    tasks.submit_job.delay(job.pk)
    tasks.submit_job.delay(job.pk)
    wait_terminal(job)
    assert job.state == JobState.SUCCEEDED
    assert EngineCall.objects.filter(script_name="timer").count() == 1
    assert JobTransition.objects.filter(job=job, to_state=JobState.SUBMITTING).count() == 1


def test_jobs_survive_a_worker_killed_mid_run(live, analyst):
    jobs = [submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 2 + i % 5}) for i in range(100)]
    wait_for(lambda: Job.objects.filter(state=JobState.PENDING).count() >= 20, timeout=60, what="jobs in flight")
    live.kill("worker", signal.SIGKILL)
    # What the kill interrupted between a POST and its commit: OML may or may not have these jobs.
    caught_sending = Job.objects.filter(state=JobState.SUBMITTING).count()
    live.start_worker()
    for job in jobs:
        wait_terminal(job, timeout=180)
    states = {job.state for job in jobs}
    assert states <= TERMINAL_STATES
    failed = [job for job in jobs if job.state != JobState.SUCCEEDED]
    assert len(failed) <= caught_sending
    # Those end failed with that reason; none is ever sent twice.
    assert all("submission outcome unknown" in job.last_error for job in failed), [j.last_error for j in failed]
    assert EngineCall.objects.filter(script_name="timer").count() <= len(jobs)


@pytest.fixture
def second_stack(transactional_db, tmp_path, request):
    """A stack of its own with engine settings for one test (token lifetime, faults, two workers)."""
    stacks = []

    def start(env: dict, workers: int = 1, concurrency: int = 2) -> Stack:
        from jobs.services.jobs import connection_save
        from tests.conftest import analysts_team, seed_engine

        stack = Stack(log_dir=tmp_path, env=env)
        stacks.append(stack)
        seed_engine()
        stack.start_web()
        stack.start_engine_worker()
        for number in range(workers):
            stack.start_worker(name=f"worker{number}", beat=number == 0, concurrency=concurrency)
        connection_save(
            name="Engine",
            base_url=stack.base_url,
            username="OMLUSER",
            password="omluser",
            is_default=True,
            teams=[analysts_team()],
        )
        return stack

    yield start
    for stack in stacks:
        stack.stop()


def test_long_jobs_succeed_while_tokens_expire_every_few_seconds(second_stack, analyst):
    second_stack({"OMLENGINE_TOKEN_LIFETIME": "3", "OML_TOKEN_REFRESH_MARGIN": "1"})
    jobs = [submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 8}) for _ in range(5)]
    for job in jobs:
        wait_terminal(job)
        assert job.state == JobState.SUCCEEDED, job.last_error


def test_every_job_succeeds_with_the_engine_answering_20_percent_503(second_stack, analyst):
    second_stack({"OMLENGINE_FAULTS": "503=0.2"})
    jobs = [submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 1 + i % 3}) for i in range(40)]
    for job in jobs:
        wait_terminal(job, timeout=120)
    # A 503 on a status request (even after the client's retries) says nothing about the job: never "failed".
    not_succeeded = [(j.pk, j.state, j.last_error) for j in jobs if j.state != JobState.SUCCEEDED]
    assert not not_succeeded, [
        (pk, list(JobTransition.objects.filter(job_id=pk).values_list("to_state", "reason", "http_status")))
        for pk, _, _ in not_succeeded
    ]
    assert EngineCall.objects.filter(script_name="timer").count() == len(jobs)


def test_two_workers_sweep_the_same_jobs_and_finish_each_exactly_once(second_stack, analyst):
    second_stack({}, workers=2)
    jobs = [submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 3 + i % 7}) for i in range(200)]
    for job in jobs:
        wait_terminal(job, timeout=240)
    assert {job.state for job in jobs} == {JobState.SUCCEEDED}
    for job in jobs:
        moves = list(JobTransition.objects.filter(job=job).values_list("from_state", "to_state"))
        assert len(moves) == len(set(moves)) == 4
        # Every status request the engine saw was counted by a sweep. The job may count one more than the
        # engine: a request that met an error (the engine's database busy under this load) still counts.
        seen = EngineJob.objects.get(pk=job.oml_job_id).status_requests
        assert seen <= job.poll_count <= seen + 2


def test_a_cancel_whose_message_is_lost_is_still_carried_out(live, analyst):
    from jobs.services.jobs import job_cancel

    job = submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 600})
    wait_for(lambda: Job.objects.get(pk=job.pk).state == JobState.PENDING, what="pending")
    job.refresh_from_db()
    # The request as job_cancel records it, without the message that would have carried it out at once.
    Job.objects.filter(pk=job.pk).update(cancel_requested_at=timezone.now())
    wait_terminal(job)
    assert job.state == JobState.CANCELLED
    assert EngineJob.objects.get(pk=job.oml_job_id).state == EngineJob.State.DELETED
    assert job_cancel(job=job, actor=analyst) is False


def test_a_job_whose_message_and_sweep_race_is_submitted_exactly_once(second_stack, analyst):
    from jobs.selectors import access

    # No grace: the sweeps take queued jobs as soon as they see them, racing the on-commit messages, on two
    # workers. Some jobs have no message at all (as if it were lost): only a sweep can submit those.
    second_stack({"JOBS_SUBMIT_GRACE": "0"}, workers=2)
    raced = [submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 1 + i % 3}) for i in range(30)]
    spec = parse_job_request({"kind": "do_eval", "script": "timer", "parameters": {"seconds": 1}})
    team_id = access.home_team_id(analyst, connection_id=spec.connection.pk)
    unsent = [Job.objects.create(owner=analyst, team_id=team_id, **spec.model_fields()) for _ in range(10)]
    jobs = raced + unsent
    for job in jobs:
        wait_terminal(job, timeout=120)
    assert {job.state for job in jobs} == {JobState.SUCCEEDED}
    for job in jobs:
        assert JobTransition.objects.filter(job=job, to_state=JobState.SUBMITTING).count() == 1
        assert EngineCall.objects.filter(job_id=job.oml_job_id).count() == 1
    assert EngineCall.objects.filter(script_name="timer").count() == len(jobs)


def test_the_sweep_submits_a_refused_job_again_only_once_its_retry_time_has_come(db, analyst):
    from django.test import override_settings

    from jobs.services.jobs import connection_save
    from jobs.worker.lifecycle import claim_waiting_submissions
    from tests.conftest import analysts_team

    connection_save(
        name="Main",
        base_url="http://127.0.0.1:9",
        username="U",
        password="pw",
        is_default=True,
        teams=[analysts_team()],
    )
    waiting = submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 1})
    later = submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 1})
    now = timezone.now()
    Job.objects.filter(pk=later.pk).update(submit_after=now + timedelta(minutes=5))
    with override_settings(JOBS_SUBMIT_GRACE=0, JOBS_POLL_LEASE=30):
        claimed, sync_calls = claim_waiting_submissions(now=now)
        assert (claimed, sync_calls) == ([waiting.pk], [])
        # Claimed: leased through its own column; next_poll_at stays the pending jobs' alone.
        waiting.refresh_from_db()
        assert waiting.submit_after == now + timedelta(seconds=30)
        assert waiting.next_poll_at is None
        assert claim_waiting_submissions(now=now + timedelta(seconds=1)) == ([], [])
        assert claim_waiting_submissions(now=now + timedelta(minutes=6)) == ([waiting.pk, later.pk], [])


def _pending_now(job: Job) -> Job:
    """Wait for `job` to be pending, then take it out of every sweep's reach (its next poll far ahead)."""
    wait_for(lambda: Job.objects.get(pk=job.pk).state == JobState.PENDING, what="pending")
    Job.objects.filter(pk=job.pk).update(next_poll_at=timezone.now() + timedelta(days=1))
    return Job.objects.get(pk=job.pk)


def test_a_poll_that_finds_its_job_running_reads_and_writes_nothing_and_the_sweep_writes_all_in_one(live, analyst):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from jobs.worker.lifecycle import claim_due_jobs, poll, record_still_running
    from metrics import recorder

    jobs = [
        _pending_now(submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 600})) for _ in range(3)
    ]
    # A claim reads the jobs with their connection in its one SELECT (its `now` past their next poll).
    claimed = claim_due_jobs(now=timezone.now() + timedelta(days=2))
    assert sorted(job.pk for job in claimed) == sorted(job.pk for job in jobs)
    try:
        with CaptureQueriesContext(connection) as queries:
            outcomes = [poll(job) for job in claimed]
    finally:
        # The polls counted in this process's metrics are left out: the next request of another test would
        # flush them to the database.
        recorder.drain()
    assert [query["sql"] for query in queries] == []
    rows = [outcome.still_running for outcome in outcomes]
    assert all(rows)
    with CaptureQueriesContext(connection) as queries:
        assert record_still_running(rows) == 3
    assert len(queries) == 1
    for job, row in zip(claimed, rows, strict=True):
        recorded = Job.objects.get(pk=job.pk)
        # The running stack's own sweep may have polled the job too before it was taken out of reach.
        assert 1 <= recorded.poll_count <= EngineJob.objects.get(pk=job.oml_job_id).status_requests
        assert recorded.poll_log["first"][-1][1] == 202
        assert recorded.oml_last_running_at >= row["oml_last_running_at"]
        tasks.cancel_job.delay(job.pk, "test")
    for job in jobs:
        wait_terminal(job)


def test_a_slow_result_download_never_holds_other_jobs_polls(second_stack, analyst):
    # The engine holds every result download far longer than this test waits; one worker process, sweeping
    # often, polls the other job at a fixed short interval. Were the download inside the sweep, no sweep
    # would end (and no poll be recorded) until it was over.
    second_stack(
        {
            "OMLENGINE_FAULTS": "slowresult=1,delay_seconds=90",
            "JOBS_POLL_STRATEGY": "fixed",
            "JOBS_POLL_FIXED_INTERVAL": "0.1",
            "JOBS_SWEEP_INTERVAL": "0.2",
            "JOBS_SWEEP_FETCH_WAIT": "0.1",
        },
        concurrency=1,
    )
    running = submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 600})
    wait_for(lambda: Job.objects.get(pk=running.pk).state == JobState.PENDING, what="pending")
    finishing = submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 0.2})
    wait_for(lambda: Job.objects.get(pk=finishing.pk).state == JobState.FETCHING, what="fetching")
    polled = Job.objects.get(pk=running.pk).poll_count
    wait_for(
        lambda: Job.objects.get(pk=running.pk).poll_count >= polled + 2,
        timeout=45,
        what="two more polls of the running job while the other's result is held",
    )
    # The download is still held by the engine all the while.
    assert Job.objects.get(pk=finishing.pk).state == JobState.FETCHING
    for job in (running, finishing):
        tasks.cancel_job.delay(job.pk, "test")
    assert wait_terminal(running).state == JobState.CANCELLED
    assert wait_terminal(finishing).state == JobState.CANCELLED
