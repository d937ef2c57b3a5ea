"""The analysts' pages without a browser: validation, access, live fragments, and a fixed number of queries."""

from __future__ import annotations

import json
import zoneinfo
from datetime import datetime, timedelta

from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, Team
from jobs.models import Job
from jobs.services.jobs import connection_save, job_result_store, job_transition
from jobs.states import JobKind, JobState
from jobs.templatetags.jobs_tags import zoned
from tests.conftest import analysts_team
from tests.factories import bulk_jobs, make_job

GROUP_APPLY = {
    "kind": "group_apply",
    "script": "group_count",
    "input": "select * from IRIS",
    "groupBy": "Species",
    "orderBy": "Sepal_Length",
    "parameters": '{"oml_input_type": "pandas.DataFrame"}',
    "parallelFlag": "true",
    "asyncFlag": ["false", "true"],
}


def finish(job: Job, state: str = JobState.SUCCEEDED, **fields) -> None:
    """Walk a job through the async path to `state` with the one state writer."""
    now = timezone.now()
    job_transition(job_id=job.pk, to_state=JobState.SUBMITTING, reason="worker picked it up", at=now)
    job_transition(
        job_id=job.pk,
        to_state=JobState.PENDING,
        reason="OML accepted the job",
        http_status=201,
        latency_ms=12,
        at=now + timedelta(seconds=0.2),
        submitted_at=now,
        oml_job_id="42",
        oml_job_url="http://127.0.0.1:9/oml/api/py-scripts/v2/jobs/42",
        next_poll_at=now + timedelta(seconds=1),
    )
    if state == JobState.SUCCEEDED:
        job_transition(
            job_id=job.pk,
            to_state=JobState.FETCHING,
            reason="OML finished the job",
            http_status=302,
            at=now + timedelta(seconds=2),
            oml_finished_at=now + timedelta(seconds=2),
        )
        job_transition(
            job_id=job.pk,
            to_state=JobState.SUCCEEDED,
            reason="result stored",
            http_status=200,
            at=now + timedelta(seconds=2.5),
            result_fetched_at=now + timedelta(seconds=2.5),
            **fields,
        )
    else:
        job_transition(job_id=job.pk, to_state=state, reason="script error", http_status=400, **fields)
    job.refresh_from_db()


# --- Compose ----------------------------------------------------------------------------------------


def test_the_home_page_sends_analysts_to_their_history(signed_in):
    response = signed_in.get("/")
    assert response.status_code == 302
    assert response["Location"] == reverse("jobs:history")


def test_pages_ask_anonymous_visitors_to_sign_in(client, conn):
    for url in ("/jobs/", "/jobs/new/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_the_compose_form_draws_every_body_field_with_its_help(signed_in, conn):
    page = signed_in.get("/jobs/new/").content.decode()
    for name in ("input", "parameters", "rows", "groupBy", "orderBy", "times", "parallelFlag", "parallel"):
        assert f'name="{name}"' in page
    for name in ("service", "asyncFlag", "timeout", "graphicsFlag", "envName", "connection", "kind", "script_owner"):
        assert f'name="{name}"' in page
    assert "Group-apply: comma-separated columns to group by." in page
    assert "<script>" not in page
    assert ' style="' not in page
    assert " onclick=" not in page


def test_a_valid_compose_queues_the_job_and_lands_on_its_page(signed_in, conn, analyst):
    response = signed_in.post("/jobs/new/", GROUP_APPLY)
    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("jobs:detail", kwargs={"job_uuid": job.uuid})
    assert (job.owner, job.kind, job.state) == (analyst, JobKind.GROUP_APPLY, JobState.QUEUED)
    assert job.oml_body() == {
        "input": "select * from IRIS",
        "parameters": '{"oml_input_type":"pandas.DataFrame"}',
        "groupBy": "Species",
        "orderBy": "Sepal_Length",
        "parallelFlag": True,
        "asyncFlag": True,
    }


def test_an_unchecked_async_box_makes_a_synchronous_call(signed_in, conn):
    signed_in.post("/jobs/new/", {"kind": "do_eval", "script": "return_df", "asyncFlag": "false"})
    assert Job.objects.get().async_flag is False


def test_bad_input_is_refused_with_messages_next_to_the_fields_and_leaves_no_job(signed_in, conn):
    data = GROUP_APPLY | {"groupBy": "", "parameters": '{"oml_input_type": pandas}', "rows": "5"}
    response = signed_in.post("/jobs/new/", data)
    page = response.content.decode()
    assert response.status_code == 400
    assert "Required for group-apply calls." in page
    assert "Invalid JSON at line 1, column 20" in page
    assert "Not used by group-apply calls." in page
    assert Job.objects.count() == 0
    # What the analyst typed is still there.
    assert "select * from IRIS" in page


def test_the_preview_shows_the_exact_request_with_the_token_redacted(signed_in, conn):
    response = signed_in.post("/jobs/new/preview/", GROUP_APPLY | {"connection": str(conn.pk)})
    page = response.content.decode()
    assert "http://127.0.0.1:9/oml/api/py-scripts/v2/group-apply/group_count" in page
    assert "Bearer &lt;token&gt;" in page
    assert "curl -i -X POST" in page
    assert "&quot;groupBy&quot;: &quot;Species&quot;" in page
    assert "omluser" not in page
    assert Job.objects.count() == 0


def test_the_preview_lists_what_is_missing(signed_in, conn):
    page = signed_in.post("/jobs/new/preview/", {"kind": "row_apply"}).content.decode()
    assert "Choose a script." in page
    assert "Required for row-apply calls." in page


def test_the_script_picker_falls_back_to_a_typed_name_when_oml_cannot_list_scripts(signed_in, conn):
    response = signed_in.get("/jobs/new/scripts/", {"connection": conn.pk, "script": "group_count"})
    page = response.content.decode()
    assert response.status_code == 200
    assert 'type="text" name="script"' in page
    assert 'value="group_count"' in page
    assert "Type the script" in page or "type the script" in page


def test_auditors_may_not_compose(client, conn, make_user):
    auditor = make_user("auditor")
    Membership.objects.create(user=auditor, team=Team.objects.create(name="T"), role=Membership.Role.AUDITOR)
    client.force_login(auditor)
    response = client.get("/jobs/new/")
    assert response.status_code == 403
    assert "read-only" in response.content.decode()


# --- Access -------------------------------------------------------------------------------------------


def test_another_users_job_answers_404_everywhere(signed_in, conn, make_user):
    other = make_job(make_user("someone"), conn)
    for url in (f"/jobs/{other.uuid}/", f"/jobs/{other.uuid}/live/", f"/jobs/{other.uuid}/clone/"):
        response = signed_in.get(url)
        assert response.status_code == 404, url
        assert "job history" in response.content.decode()
    for url in (f"/jobs/{other.uuid}/cancel/", f"/jobs/{other.uuid}/rerun/"):
        assert signed_in.post(url).status_code == 404, url
    other.refresh_from_db()
    assert other.state == JobState.QUEUED
    assert Job.objects.count() == 1


def test_an_auditor_sees_a_team_job_without_its_actions_and_may_not_cancel_it(client, conn, analyst, make_user):
    team = Team.objects.create(name="Demo team")
    Membership.objects.create(user=analyst, team=team, role=Membership.Role.ANALYST)
    auditor = make_user("auditor")
    Membership.objects.create(user=auditor, team=team, role=Membership.Role.AUDITOR)
    job = make_job(analyst, conn, team=team)
    client.force_login(auditor)
    page = client.get(f"/jobs/{job.uuid}/").content.decode()
    assert "Cancel job" not in page
    assert "Re-run" not in page
    assert client.post(f"/jobs/{job.uuid}/cancel/").status_code == 403
    job.refresh_from_db()
    assert job.state == JobState.QUEUED


# --- Actions ------------------------------------------------------------------------------------------


def test_cancel_ends_a_queued_job(signed_in, conn, analyst):
    job = make_job(analyst, conn)
    response = signed_in.post(f"/jobs/{job.uuid}/cancel/")
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED


def test_rerun_makes_a_new_job_linked_to_its_parent(signed_in, conn, analyst):
    job = make_job(analyst, conn, kind=JobKind.INDEX_APPLY, times=3)
    response = signed_in.post(f"/jobs/{job.uuid}/rerun/")
    child = Job.objects.exclude(pk=job.pk).get()
    assert response["Location"] == reverse("jobs:detail", kwargs={"job_uuid": child.uuid})
    assert (child.parent, child.kind, child.times) == (job, JobKind.INDEX_APPLY, 3)
    page = signed_in.get(f"/jobs/{child.uuid}/").content.decode()
    assert f'href="/jobs/{job.uuid}/"' in page


def test_clone_prefills_the_form_and_links_the_new_job_to_its_parent(signed_in, conn, analyst):
    job = make_job(
        analyst, conn, kind=JobKind.GROUP_APPLY, input_sql="select * from IRIS", group_by="Species", parameters={"a": 1}
    )
    page = signed_in.get(f"/jobs/{job.uuid}/clone/").content.decode()
    assert "select * from IRIS" in page
    assert 'value="Species"' in page
    assert "&quot;a&quot;: 1" in page
    data = GROUP_APPLY | {"connection": str(conn.pk), "groupBy": "SPECIES"}
    response = signed_in.post(f"/jobs/{job.uuid}/clone/", data)
    child = Job.objects.exclude(pk=job.pk).get()
    assert response.status_code == 302
    assert (child.parent, child.group_by) == (job, "SPECIES")


# --- The job page ---------------------------------------------------------------------------------------


def test_the_live_fragment_keeps_polling_until_the_job_ends(signed_in, conn, analyst):
    job = make_job(analyst, conn)
    response = signed_in.get(f"/jobs/{job.uuid}/live/")
    assert response.status_code == 200
    assert "hx-trigger" in response.content.decode()
    job_transition(job_id=job.pk, to_state=JobState.CANCELLED, reason="cancelled by analyst")
    response = signed_in.get(f"/jobs/{job.uuid}/live/")
    assert response.status_code == 286
    assert "hx-trigger" not in response.content.decode()


def test_the_job_page_shows_the_timeline_durations_and_a_result_preview(signed_in, conn, analyst):
    job = make_job(
        analyst, conn, kind=JobKind.GROUP_APPLY, script_name="group_count", input_sql="select 1", group_by="SPECIES"
    )
    finish(job)
    body = {
        "result": {
            "setosa": {"SPECIES": {"0": "setosa"}, "SEPAL_LENGTH": {"0": 4.3}, "COUNT": {"0": 50}},
            "virginica": {"SPECIES": {"0": "virginica"}, "SEPAL_LENGTH": {"0": 4.9}, "COUNT": {"0": 50}},
        }
    }
    job_result_store(job_id=job.pk, chunks=[json.dumps(body).encode()], content_type="application/json", shape="groups")
    page = signed_in.get(f"/jobs/{job.uuid}/").content.decode()
    assert "OML accepted the job" in page
    assert "result stored" in page
    assert "Succeeded" in page
    for label in ("Queue wait", "OML time", "Fetch time"):
        assert label in page
    assert "<td>virginica</td>" in page
    assert "<th>COUNT</th>" in page
    assert f"/jobs/{job.uuid}/result/" in page
    assert "Cancel job" not in page


def test_a_failed_job_shows_the_error_verbatim(signed_in, conn, analyst):
    job = make_job(analyst, conn)
    error = 'Traceback (most recent call last):\n  File "<string>", line 2\nZeroDivisionError: <b>division</b> by zero'
    finish(job, JobState.FAILED, last_error=error)
    page = signed_in.get(f"/jobs/{job.uuid}/").content.decode()
    assert "ZeroDivisionError: &lt;b&gt;division&lt;/b&gt; by zero" in page
    assert 'File "<string>"' not in page  # escaped, never raw HTML


# --- History ---------------------------------------------------------------------------------------------


def _bulk_jobs(owner, conn, count: int) -> None:
    bulk_jobs(owner, conn, count, script=lambda i: f"script_{i % 3}")


def _history_queries(client) -> list[str]:
    with CaptureQueriesContext(db_connection) as queries:
        response = client.get("/jobs/", {"sort": "newest"})
    assert response.status_code == 200
    return [q["sql"] for q in queries.captured_queries]


def test_history_runs_the_same_queries_for_10_rows_as_for_100_and_never_counts(signed_in, conn, analyst):
    _bulk_jobs(analyst, conn, 10)
    ten = _history_queries(signed_in)
    _bulk_jobs(analyst, conn, 90)
    hundred = _history_queries(signed_in)
    assert len(ten) == len(hundred)
    assert not [sql for sql in hundred if "COUNT(" in sql.upper()]


def test_history_rows_fragment_queries_are_fixed(signed_in, conn, analyst, django_assert_max_num_queries):
    _bulk_jobs(analyst, conn, 100)
    ids = [str(u) for u in Job.objects.values_list("uuid", flat=True)]
    with django_assert_max_num_queries(6):
        response = signed_in.get("/jobs/rows/", {"id": ids})
    assert response.status_code == 200
    assert response.content.decode().count("hx-swap-oob") == 100


def test_history_lists_jobs_newest_first_with_pagination(signed_in, conn, analyst):
    _bulk_jobs(analyst, conn, 60)
    first = signed_in.get("/jobs/")
    page = first.content.decode()
    assert page.count('<tr id="job-') == 50
    assert "Older jobs" in page
    second = signed_in.get("/jobs/", {"after": first.context["page"].next_cursor})
    assert second.content.decode().count('<tr id="job-') == 10
    assert "End of the list." in second.content.decode()


def test_history_filters_by_state_kind_script_owner_and_search(signed_in, conn, analyst, make_user):
    done = make_job(analyst, conn, script_name="alpha")
    finish(done)
    make_job(analyst, conn, script_name="beta", kind=JobKind.INDEX_APPLY, times=2)
    make_job(make_user("someone"), conn, script_name="alpha")

    def rows(**params):
        return signed_in.get("/jobs/", params).context["jobs"]

    assert {j.script_name for j in rows()} == {"alpha", "beta"}
    assert [j.pk for j in rows(state="succeeded")] == [done.pk]
    assert [j.script_name for j in rows(kind="index_apply")] == ["beta"]
    assert [j.pk for j in rows(script="alpha")] == [done.pk]
    assert len(rows(owner="analyst")) == 2
    assert rows(owner="someone") == []
    assert [j.pk for j in rows(q=str(done.uuid))] == [done.pk]
    assert [j.pk for j in rows(q="42")] == [done.pk]
    page = signed_in.get("/jobs/", {"state": "timed_out"}).content.decode()
    assert "No jobs match these filters" in page


def test_history_filter_bar_shows_the_filters_in_use(signed_in, conn, analyst):
    other = connection_save(
        name="Other <db>", base_url="http://127.0.0.1:9", username="U", password="pw", teams=[analysts_team()]
    )
    plain = signed_in.get("/jobs/").content.decode()
    assert " checked>" not in plain
    assert '<option value="">Any</option>' in plain
    assert f'<option value="{other.pk}">Other &lt;db&gt;</option>' in plain
    assert '<option value="newest" selected>' in plain

    page = signed_in.get(
        "/jobs/", {"state": ["failed", "running"], "kind": "do_eval", "connection": other.pk, "sort": "oldest"}
    ).content.decode()
    assert '<input type="checkbox" name="state" value="failed" checked>' in page
    assert '<input type="checkbox" name="state" value="running" checked>' in page
    assert '<input type="checkbox" name="state" value="succeeded">' in page
    assert '<input type="checkbox" name="kind" value="do_eval" checked>' in page
    assert f'<option value="{other.pk}" selected>' in page
    assert f'<option value="{conn.pk}">' in page
    assert '<option value="oldest" selected>' in page
    assert '<option value="newest">' in page


def test_history_defaults_to_the_last_seven_days_and_takes_a_date_range(signed_in, conn, analyst):
    old = make_job(analyst, conn, script_name="old")
    Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=30))
    make_job(analyst, conn, script_name="new")
    assert [j.script_name for j in signed_in.get("/jobs/").context["jobs"]] == ["new"]
    day = (timezone.now() - timedelta(days=30)).date().isoformat()
    jobs = signed_in.get("/jobs/", {"created_from": day, "created_to": day}).context["jobs"]
    assert [j.script_name for j in jobs] == ["old"]


def test_history_sorts_by_duration_with_unfinished_jobs_last(signed_in, conn, analyst):
    quick, slow = make_job(analyst, conn, script_name="quick"), make_job(analyst, conn, script_name="slow")
    make_job(analyst, conn, script_name="unfinished")
    now = timezone.now()
    Job.objects.filter(pk=quick.pk).update(state=JobState.SUCCEEDED, finished_at=now + timedelta(seconds=1))
    Job.objects.filter(pk=slow.pk).update(state=JobState.SUCCEEDED, finished_at=now + timedelta(seconds=90))
    jobs = signed_in.get("/jobs/", {"sort": "longest"}).context["jobs"]
    assert [j.script_name for j in jobs] == ["slow", "quick", "unfinished"]
    jobs = signed_in.get("/jobs/", {"sort": "oldest"}).context["jobs"]
    assert [j.script_name for j in jobs] == ["quick", "slow", "unfinished"]


def test_history_rows_fragment_stops_polling_once_every_row_has_ended(signed_in, conn, analyst):
    job = make_job(analyst, conn)
    response = signed_in.get("/jobs/rows/", {"id": [str(job.uuid)]})
    assert response.status_code == 200
    assert "every 2s" in response.content.decode()
    job_transition(job_id=job.pk, to_state=JobState.CANCELLED, reason="cancelled")
    response = signed_in.get("/jobs/rows/", {"id": [str(job.uuid)]})
    assert response.status_code == 286
    assert "Cancelled" in response.content.decode()


def test_the_history_of_a_new_user_says_what_to_do(signed_in, conn):
    page = signed_in.get("/jobs/").content.decode()
    assert "No jobs in the last 7 days" in page
    assert "Compose a call" in page


# --- Times ------------------------------------------------------------------------------------------------


def test_times_are_shown_in_the_users_zone_with_the_zone_named():
    moment = datetime(2026, 11, 27, 8, 41, 3, tzinfo=zoneinfo.ZoneInfo("UTC"))
    with timezone.override(zoneinfo.ZoneInfo("Europe/Paris")):
        assert zoned(moment) == "2026-11-27 09:41:03 CET"
    with timezone.override(zoneinfo.ZoneInfo("UTC")):
        assert zoned(moment) == "2026-11-27 08:41:03 UTC"
