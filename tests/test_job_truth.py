"""What the job page and the statistics say is true: the script that really ran, OML's time told apart from our
polling delay, every status request kept in a bounded log, and expectations learned per call signature."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from audit.models import AuditEntry
from audit.services import AuditAction, audit_verify_chain
from jobs.models import Job, ScriptStats
from jobs.selectors.stats import SIGNATURE_MIN_RUNS, call_signature, script_durations, script_stats_record
from jobs.selectors.timing import job_phases, learned_seconds, oml_bounds
from jobs.services.jobs import job_rerun
from jobs.states import JobState
from jobs.worker.polling import poll_log_append, poll_log_entry, poll_log_rows
from omlengine.models import EngineJob
from omlengine.services import script_save
from tests.stack import wait_for
from tests.test_lifecycle import submit, wait_terminal

T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def entry(n: int) -> list:
    return poll_log_entry(
        at=1_700_000_000 + n, http_status=202, oml_status="job is still running", elapsed_seconds=n, latency_ms=3
    )


# --- The poll log --------------------------------------------------------------------------------


def test_the_poll_log_keeps_the_first_and_last_polls_and_counts_those_between():
    log: dict = {}
    for n in range(50):
        before = repr(log)
        log = poll_log_append(log, entry(n), first=3, last=4)
        assert repr(log) != before
    assert [e[3] for e in log["first"]] == [0, 1, 2]
    assert [e[3] for e in log["last"]] == [46, 47, 48, 49]
    assert log["dropped"] == 43
    first, last, dropped = poll_log_rows(log)
    assert first[0] == {
        "at": 1_700_000_000.0,
        "http_status": 202,
        "oml_status": "job is still running",
        "elapsed_seconds": 0,
        "latency_ms": 3,
    }
    assert len(first) + len(last) + dropped == 50


def test_appending_to_the_poll_log_leaves_the_old_log_as_it_was():
    old = poll_log_append({}, entry(0), first=1, last=2)
    snapshot = repr(old)
    new = poll_log_append(old, entry(1), first=1, last=2)
    assert repr(old) == snapshot
    assert new == {"first": [entry(0)], "last": [entry(1)], "dropped": 0}


def test_a_short_poll_log_keeps_every_poll_in_order():
    log = None
    for n in range(4):
        log = poll_log_append(log, entry(n), first=5, last=20)
    first, last, dropped = poll_log_rows(log)
    assert [row["elapsed_seconds"] for row in first + last] == [0, 1, 2, 3]
    assert dropped == 0


def test_a_poll_log_of_an_unknown_shape_shows_nothing_rather_than_failing():
    assert poll_log_rows({"first": [[1, 2]], "last": "x", "dropped": 0}) == ([], [], 0)
    assert poll_log_rows(None) == ([], [], 0)


# --- Timing ---------------------------------------------------------------------------------------


def async_job(**fields) -> SimpleNamespace:
    values = {
        "created_at": at(0),
        "submitted_at": at(1),
        "oml_accepted_at": at(1.1),
        "oml_last_running_at": at(21.1),
        "oml_elapsed_seconds": 19.0,
        "oml_finished_at": at(31.1),
        "result_fetched_at": at(31.3),
        "finished_at": at(31.3),
        "async_flag": True,
    }
    return SimpleNamespace(**(values | fields))


def test_oml_time_is_bounded_by_the_last_202_and_the_302_and_the_lag_is_its_own_figure():
    bounds = oml_bounds(async_job())
    # A 20 s run seen 10 s late: OML took at least 20 s (last 202 - 201) and at most 30.1 s (302 - POST).
    assert bounds.low == pytest.approx(20.0)
    assert bounds.high == pytest.approx(30.1)
    assert bounds.lag == pytest.approx(10.0)
    assert bounds.elapsed == 19.0
    assert learned_seconds(async_job()) == pytest.approx(25.0)


def test_oml_s_own_elapsed_time_raises_the_lower_bound():
    bounds = oml_bounds(async_job(oml_elapsed_seconds=24.0))
    assert bounds.low == pytest.approx(24.0)


def test_a_job_found_finished_at_its_first_poll_has_the_whole_wait_as_its_lag():
    bounds = oml_bounds(async_job(oml_last_running_at=None, oml_elapsed_seconds=None))
    assert (bounds.low, bounds.lag) == (0.0, pytest.approx(30.0))


def test_the_phases_follow_one_another_and_stack_to_the_duration():
    phases = job_phases(async_job())
    assert phases == {
        "queue": pytest.approx(1.0),
        "oml": pytest.approx(20.1),
        "lag": pytest.approx(10.0),
        "fetch": pytest.approx(0.2),
    }
    assert sum(phases.values()) == pytest.approx(31.3)


def test_a_synchronous_call_has_no_lag_and_no_bounds_to_speak_of():
    sync = async_job(async_flag=False, oml_accepted_at=None, oml_last_running_at=None, oml_finished_at=None)
    bounds = oml_bounds(sync)
    assert (bounds.low, bounds.high, bounds.lag) == (pytest.approx(30.3), pytest.approx(30.3), None)
    assert job_phases(sync)["lag"] is None


def test_a_job_oml_has_not_finished_has_no_bounds_yet():
    assert oml_bounds(async_job(oml_finished_at=None)) is None
    assert job_phases(async_job(oml_finished_at=None))["oml"] is None


# --- Call signatures and statistics -----------------------------------------------------------------


def call(**fields) -> SimpleNamespace:
    values = {
        "kind": "do_eval",
        "parameters": {"seconds": 20},
        "input_sql": "",
        "rows": None,
        "group_by": "",
        "times": None,
        "connection_id": 1,
    }
    return SimpleNamespace(**(values | fields))


def test_a_call_signature_tells_apart_what_changes_the_work_and_ignores_the_order_of_keys():
    base = call_signature(call(parameters={"a": 1, "b": 2}))
    assert base == call_signature(call(parameters={"b": 2, "a": 1}))
    for changed in (
        call(parameters={"a": 1, "b": 3}),
        call(parameters={"a": 1, "b": 2}, input_sql="select 1"),
        call(parameters={"a": 1, "b": 2}, connection_id=2),
        call(parameters={"a": 1, "b": 2}, kind="index_apply", times=3),
        call(parameters={"a": 1, "b": 2}, rows=10),
        call(parameters={"a": 1, "b": 2}, group_by="SPECIES"),
    ):
        assert call_signature(changed) != base


@pytest.mark.django_db
def test_expectations_follow_the_signature_once_it_has_five_runs_else_the_script():
    fast, slow = call_signature(call(parameters={"seconds": 20})), call_signature(call(parameters={"seconds": 200}))
    key = {"connection_id": 1, "script_name": "timer", "script_owner": ""}
    for _ in range(10):
        script_stats_record(**key, signature=fast, seconds=20.0, at=T0)
    for n in range(SIGNATURE_MIN_RUNS - 1):
        script_stats_record(**key, signature=slow, seconds=200.0 + n, at=T0)
    # Four slow runs are not enough: the script's mixed history speaks for them.
    assert sorted(script_durations(**key, signature=slow)) == sorted([20.0] * 10 + [200.0, 201.0, 202.0, 203.0])
    assert script_durations(**key, signature=fast) == [20.0] * 10
    script_stats_record(**key, signature=slow, seconds=204.0, at=T0)
    assert script_durations(**key, signature=slow) == [200.0, 201.0, 202.0, 203.0, 204.0]
    assert script_durations(**key, signature="no-such-signature") == script_durations(**key)
    assert ScriptStats.objects.filter(script_name="timer").count() == 3


def test_a_script_with_old_job_rows_keeps_its_learned_schedule_after_its_first_recorded_run(analyst):
    from django.utils import timezone

    from jobs.services.jobs import connection_save
    from jobs.worker.lifecycle import expectation_for

    connection = connection_save(name="old", base_url="http://127.0.0.1:9", username="U", password="p")
    start = timezone.now()  # a job cannot finish before its row was created
    for n in range(6):  # runs from before statistics were kept: only their job rows know them
        Job.objects.create(
            owner=analyst,
            connection=connection,
            kind="do_eval",
            script_name="old_script",
            state=JobState.SUCCEEDED,
            async_flag=True,
            oml_accepted_at=start,
            oml_finished_at=start + timedelta(seconds=30 + n),
            finished_at=start + timedelta(seconds=31 + n),
        )
    job = Job.objects.create(owner=analyst, connection=connection, kind="do_eval", script_name="old_script")
    before = expectation_for(job)
    assert before is not None
    assert before.median == pytest.approx(32.5, rel=0.01)
    # One run recorded in the statistics is too few to learn from: the job rows still speak.
    script_stats_record(connection_id=connection.pk, script_name="old_script", script_owner="", seconds=31, at=T0)
    after = expectation_for(job)
    assert after is not None
    assert after.median == pytest.approx(before.median)


# --- On the running system -------------------------------------------------------------------------


def register(name: str, body: str) -> str:
    script_save(name=name, owner="OMLUSER", source=body, is_global=True)
    return hashlib.sha256(body.encode()).hexdigest()


VERSION = (
    'def truth_probe(seconds=0):\n    import time\n    time.sleep(float(seconds))\n    return {{"version": {n}}}\n'
)


def sent_entry(job: Job) -> AuditEntry:
    """The audit entry of the job's submission that says what OML was sent."""
    return AuditEntry.objects.get(action=AuditAction.SENT_TO_OML, target_id=str(job.uuid))


def test_a_script_edited_and_re_run_within_a_second_records_the_new_body(live, analyst, client):
    first_sha = register("truth_probe", VERSION.format(n=1))
    first = wait_terminal(submit(analyst, kind="do_eval", script="truth_probe"))
    assert first.state == JobState.SUCCEEDED
    assert first.script_sha256 == first_sha
    assert first.script_date

    second_sha = register("truth_probe", VERSION.format(n=2))
    rerun = job_rerun(job=first, actor=analyst)
    rerun = wait_terminal(rerun)
    assert rerun.state == JobState.SUCCEEDED
    # What ran is the new body, and that is what the job says ran.
    assert rerun.script_sha256 == second_sha != first_sha
    assert rerun.script_source == VERSION.format(n=2)
    assert rerun.script_date > first.script_date
    assert rerun.script_changed is False
    assert (rerun.finished_at - first.finished_at) < timedelta(seconds=60)

    # The audit trail says the same as each job: the snapshot it was sent with, written by the worker.
    for job, sha in ((first, first_sha), (rerun, second_sha)):
        entry = sent_entry(job)
        assert entry.details == {
            "kind": "do_eval",
            "script": "truth_probe",
            "script_owner": "",
            "script_sha256": sha,
            "script_date": job.script_date,
        }
        assert entry.actor_username == analyst.username
        assert entry.target_type == "job"
    assert audit_verify_chain().ok

    # The compare page shows each job's snapshot: the two bodies differ.
    client.force_login(analyst)
    page = client.get("/jobs/compare/", {"a": str(first.uuid), "b": str(rerun.uuid)}).content.decode()
    row = page.split("Script source (sha256)", 1)[1].split("</tr>", 1)[0]
    assert first_sha in row
    assert second_sha in row
    assert "differs" in row


def test_a_script_replaced_while_its_job_runs_is_flagged_on_the_job_page(live, analyst, client):
    register("truth_probe", VERSION.format(n=1))
    job = submit(analyst, kind="do_eval", script="truth_probe", parameters={"seconds": 2})

    def pending():
        job.refresh_from_db()
        return job.state == JobState.PENDING

    wait_for(pending, timeout=60, what="the job to be running in OML")
    register("truth_probe", VERSION.format(n=3))
    job = wait_terminal(job)
    assert job.state == JobState.SUCCEEDED
    assert job.script_changed is True
    assert job.script_date_at_finish
    assert job.script_date_at_finish != job.script_date
    client.force_login(analyst)
    page = client.get(f"/jobs/{job.uuid}/").content.decode()
    assert "The script changed while this job ran" in page
    assert job.script_date_at_finish in page


def test_every_status_request_is_logged_and_oml_s_finish_lies_between_the_last_202_and_the_302(live, analyst, client):
    register("truth_probe", VERSION.format(n=1))
    job = wait_terminal(submit(analyst, kind="do_eval", script="truth_probe", parameters={"seconds": 2}))
    assert job.state == JobState.SUCCEEDED
    first, last, dropped = poll_log_rows(job.poll_log)
    polls = first + last
    assert len(polls) + dropped == job.poll_count >= 2
    assert [p["http_status"] for p in polls[:-1]] == [202] * (len(polls) - 1)
    assert polls[-1]["http_status"] == 302
    assert all(p["oml_status"] == "job is still running" for p in polls[:-1])
    assert all(p["latency_ms"] is not None and p["latency_ms"] >= 0 for p in polls)
    assert [p["at"] for p in polls] == sorted(p["at"] for p in polls)
    assert job.oml_last_running_at.timestamp() == pytest.approx(polls[-2]["at"], abs=0.001)

    engine = EngineJob.objects.get(pk=job.oml_job_id)
    # The engine stamps its finish just before committing it: a 202 sent in between is a few ms later.
    assert job.oml_last_running_at - timedelta(milliseconds=500) <= engine.finished_at <= job.oml_finished_at
    bounds = oml_bounds(job)
    assert bounds.low <= bounds.high
    assert bounds.lag == pytest.approx((job.oml_finished_at - job.oml_last_running_at).total_seconds())

    # Learned per script and per signature, from the same run.
    stats = dict(ScriptStats.objects.filter(script_name="truth_probe").values_list("signature", "runs"))
    assert stats == {"": 1, job.call_signature: 1}
    assert job.call_signature == call_signature(job)

    client.force_login(analyst)
    page = client.get(f"/jobs/{job.uuid}/").content.decode()
    assert '<details id="poll-log">' in page  # collapsed until opened
    assert page.count("job is still running") == len(polls) - 1
    assert 'id="detection-lag"' in page


def test_the_signature_statistics_outlive_the_job_rows_they_came_from(live, analyst):
    register("truth_probe", VERSION.format(n=1))
    job = wait_terminal(submit(analyst, kind="do_eval", script="truth_probe"))
    Job.objects.filter(pk=job.pk).delete()
    assert script_durations(
        connection_id=job.connection_id, script_name="truth_probe", script_owner="", signature=job.call_signature
    )


def test_a_graphics_result_s_dataframe_is_a_table_on_the_job_page(live, analyst, client):
    job = wait_terminal(submit(analyst, kind="do_eval", script="RandomRedDots", graphicsFlag=True))
    assert job.state == JobState.SUCCEEDED
    client.force_login(analyst)
    page = client.get(f"/jobs/{job.uuid}/").content.decode()
    preview = page.split('id="result-preview"', 1)[1]
    head = preview.split("</thead>", 1)[0]
    assert "<th>id</th>" in head
    assert "<th>val</th>" in head
    # The DataFrame's nine rows, one cell per value, not one JSON string.
    assert "<td>0.09</td>" in preview
    assert "Showing 9 of 9 rows" in preview
    assert "&quot;val&quot;" not in preview
