"""The analysts' pages in Chromium, against the running system: the web server with the embedded engine, a
Celery worker and the engine worker. Nothing here reloads a page to see a job move."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from jobs.models import Job
from jobs.services.jobs import job_create
from jobs.services.specs import parse_job_request
from jobs.states import JobKind, JobState

pytestmark = pytest.mark.browser

JOB_PAGE = re.compile(r"/jobs/[0-9a-f-]{36}/$")
LIVE_WAIT = 90_000  # ms: a job goes through a real worker, the engine and its worker


def mark_page(page) -> None:
    """Leave a mark in the page's JavaScript state; a reload would wipe it."""
    page.evaluate("window.__stillTheSamePage = true")


def assert_not_reloaded(page) -> None:
    assert page.evaluate("window.__stillTheSamePage === true"), "the page was reloaded"


def open_compose(page, live) -> None:
    page.goto(live.url("/jobs/new/"))
    # The script list comes from the connection's OML service.
    page.wait_for_selector("select#id_script option[value=group_count]", state="attached")


def finished_job(owner, conn, *, state=JobState.SUCCEEDED, **fields) -> Job:
    values = {"kind": JobKind.DO_EVAL, "script_name": "return_df"} | fields
    job = Job.objects.create(owner=owner, connection=conn, **values)
    # Arranged directly: a finished job from the past, which no worker will touch.
    Job.objects.filter(pk=job.pk).update(state=state, finished_at=timezone.now())
    job.refresh_from_db()
    return job


def test_an_analyst_composes_the_seed_group_apply_and_sees_it_succeed_without_reloading(live, page, login, analyst):
    login(page, "analyst")
    open_compose(page, live)

    page.select_option("#id_kind", "group_apply")
    page.select_option("#id_script", "group_count")
    info = page.locator(".script-info:visible")
    expect(info).to_contain_text("OMLUSER")
    info.locator("summary").click()
    expect(info.locator("pre")).to_contain_text("def group_count")
    # Fields group-apply does not take are hidden.
    expect(page.locator("#id_times")).to_be_hidden()
    expect(page.locator("#id_rows")).to_be_hidden()
    page.fill("#id_input", "select * from IRIS")
    page.fill("#id_groupBy", "Species")
    page.fill("#id_orderBy", "Sepal_Length")
    page.fill("#id_parameters", '{"oml_input_type": "pandas.DataFrame"}')
    expect(page.locator("#parameters-status")).to_have_text("Valid JSON object.")
    page.check("#id_parallelFlag")
    expect(page.locator("#id_asyncFlag")).to_be_checked()

    # The preview is the exact request, updated as the fields change.
    expect(page.locator("#preview-url")).to_have_text(live.url("/oml/api/py-scripts/v2/group-apply/group_count"))
    expect(page.locator("#preview-body")).to_contain_text('"groupBy": "Species"')
    expect(page.locator("#preview-body")).to_contain_text('"parallelFlag": true')
    expect(page.locator("#preview-curl")).to_contain_text("Authorization: Bearer <token>")

    page.click("#submit-job")
    page.wait_for_url(JOB_PAGE)
    mark_page(page)
    expect(page.locator("#job-state")).to_have_text("Succeeded", timeout=LIVE_WAIT)
    assert_not_reloaded(page)

    timeline = page.locator("#timeline")
    for state in ("Submitting", "Pending", "Fetching result", "Succeeded"):
        expect(timeline).to_contain_text(state)
    expect(page.locator("#oml-job-id")).not_to_have_text("—")
    preview = page.locator("#result-preview")
    expect(preview.locator("th", has_text="COUNT")).to_be_visible()
    for species in ("setosa", "versicolor", "virginica"):
        expect(preview).to_contain_text(species)
    # Polling stopped with the job: the live part no longer asks for updates.
    assert page.locator("#job-live[hx-trigger]").count() == 0

    job = Job.objects.get()
    assert job.state == JobState.SUCCEEDED
    assert job.oml_body() == {
        "input": "select * from IRIS",
        "parameters": '{"oml_input_type":"pandas.DataFrame"}',
        "groupBy": "Species",
        "orderBy": "Sepal_Length",
        "parallelFlag": True,
        "asyncFlag": True,
    }


def test_invalid_json_in_parameters_is_refused_before_submit_with_its_position(live, page, login, analyst):
    login(page, "analyst")
    open_compose(page, live)
    page.select_option("#id_script", "group_count")
    page.fill("#id_parameters", '{\n  "oml_input_type": pandas\n}')
    page.click("#submit-job")
    expect(page.locator("#parameters-status")).to_have_text(re.compile(r"^Invalid JSON at line 2, column 21: .+\.$"))
    assert page.url.endswith("/jobs/new/")
    assert Job.objects.count() == 0


def test_history_filters_narrow_the_list(live, page, login, make_user):
    analyst = make_user("analyst")
    conn = live_connection()
    finished_job(analyst, conn, script_name="alpha")
    failed = finished_job(analyst, conn, script_name="beta", state=JobState.FAILED, last_error="boom")
    finished_job(analyst, conn, script_name="gamma", kind=JobKind.INDEX_APPLY, times=2)
    login(page, "analyst")
    page.goto(live.url("/jobs/"))
    rows = page.locator("#history-table tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator(".scope-note")).to_contain_text("last 7 days")

    page.click("#history-filters summary")  # the filters beyond search and sort fold away
    page.locator("label.chip", has_text="Failed").click()
    page.click("text=Apply filters")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("beta")
    expect(page.locator("#history-filters summary")).to_contain_text("1 in use")

    page.click("text=Clear filters")
    expect(rows).to_have_count(3)
    page.click("#history-filters summary")
    page.locator("label.chip", has_text="index-apply").click()
    page.click("text=Apply filters")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("gamma")

    page.goto(live.url("/jobs/"))
    page.fill("#id_q", str(failed.uuid))
    page.press("#id_q", "Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Failed")

    page.goto(live.url("/jobs/"))
    page.click("#history-filters summary")
    page.fill("#id_script", "nothing_like_this")
    page.click("text=Apply filters")
    expect(page.locator(".empty")).to_contain_text("No jobs match these filters")


def test_history_rows_of_unfinished_jobs_update_in_place(live, page, login, analyst):
    job = job_create(
        owner=analyst,
        spec=parse_job_request({"kind": "do_eval", "script": "timer", "parameters": {"seconds": 6}}),
    )
    login(page, "analyst")
    page.goto(live.url("/jobs/"))
    mark_page(page)
    row = page.locator(f"#job-{job.uuid}")
    expect(row).to_be_visible()
    expect(row.locator(".badge")).to_have_text("Succeeded", timeout=LIVE_WAIT)
    assert_not_reloaded(page)
    # Every row has ended: the poller is gone.
    expect(page.locator("#history-live[hx-trigger]")).to_have_count(0)


def test_rerun_and_clone_make_jobs_linked_to_their_parent(live, page, login, analyst):
    parent = finished_job(
        analyst, live_connection(), kind=JobKind.INDEX_APPLY, script_name="compute_random_mean", times=3
    )
    login(page, "analyst")

    page.goto(live.url(f"/jobs/{parent.uuid}/"))
    page.click("#rerun-job")
    page.wait_for_url(JOB_PAGE)
    expect(page.locator("#job-parent")).to_contain_text(str(parent.uuid))
    rerun = Job.objects.get(parent=parent)
    assert page.url.endswith(f"/jobs/{rerun.uuid}/")
    assert (rerun.kind, rerun.script_name, rerun.times) == (JobKind.INDEX_APPLY, "compute_random_mean", 3)

    page.goto(live.url(f"/jobs/{parent.uuid}/"))
    page.click("#clone-job")
    expect(page.locator(".lineage")).to_contain_text(str(parent.uuid))
    expect(page.locator("#id_kind")).to_have_value("index_apply")
    expect(page.locator("#id_times")).to_have_value("3")
    page.wait_for_selector("select#id_script option[value=compute_random_mean]", state="attached")
    expect(page.locator("#id_script")).to_have_value("compute_random_mean")
    page.fill("#id_times", "5")
    page.click("#submit-job")
    page.wait_for_url(JOB_PAGE)
    expect(page.locator("#job-parent")).to_contain_text(str(parent.uuid))
    clone = Job.objects.get(parent=parent, times=5)
    assert page.url.endswith(f"/jobs/{clone.uuid}/")
    # The parent's page lists both.
    page.goto(live.url(f"/jobs/{parent.uuid}/"))
    expect(page.locator("body")).to_contain_text(str(rerun.uuid))
    expect(page.locator("body")).to_contain_text(str(clone.uuid))


def live_connection():
    from jobs.models import Connection

    return Connection.objects.get(is_default=True)


def test_the_pages_run_under_the_content_security_policy_without_a_violation(live, page, login, analyst):
    violations: list[str] = []
    page.on(
        "console",
        lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None,
    )
    done = job_create(
        owner=analyst,
        spec=parse_job_request({"kind": "do_eval", "script": "return_df", "parameters": {"num": 5, "scale": 10}}),
    )
    login(page, "analyst")

    page.goto(live.url(f"/jobs/{done.uuid}/"))
    expect(page.locator("#job-state")).to_have_text("Succeeded", timeout=LIVE_WAIT)
    expect(page.locator("#result-preview table")).to_be_visible()
    response = page.goto(live.url("/jobs/"))
    assert "script-src 'self'" in response.headers.get("content-security-policy", "")
    expect(page.locator("#history-table")).to_be_visible()
    open_compose(page, live)
    page.select_option("#id_script", "return_df")
    expect(page.locator("#preview-url")).to_contain_text("/do-eval/return_df")
    page.goto(live.url(f"/jobs/{done.uuid}/clone/"))
    expect(page.locator("#id_script")).to_have_value("return_df")
    page.goto(live.url("/jobs/00000000-0000-0000-0000-000000000000/"))
    expect(page.locator("h1")).to_have_text("Nothing here")

    assert violations == []


def test_the_live_job_page_drops_the_queued_note_and_shows_the_script_and_polls_without_reloading(
    live, page, login, analyst
):
    login(page, "analyst")
    open_compose(page, live)
    page.select_option("#id_kind", "do_eval")
    page.select_option("#id_script", "sleep_seconds")
    page.fill("#id_parameters", '{"seconds": 2}')
    page.click("#submit-job")
    page.wait_for_url(JOB_PAGE)
    mark_page(page)
    expect(page.locator("#job-state")).to_have_text("Succeeded", timeout=LIVE_WAIT)
    assert_not_reloaded(page)
    job = Job.objects.get()
    # Nothing on the page still says the job is queued.
    expect(page.locator("body")).not_to_contain_text("is queued")
    expect(page.locator("#job-queued-note")).to_have_count(0)
    # The snapshot the worker took appears without a reload.
    expect(page.locator("#script-sha256")).to_have_text(job.script_sha256)
    page.locator("#script-snapshot summary").click()
    expect(page.locator("#script-source")).to_contain_text("def sleep_seconds")
    # Every poll is on the page, collapsed until opened.
    polls = page.locator("#poll-log")
    assert polls.get_attribute("open") is None
    expect(polls.locator("tbody tr").first).to_be_hidden()
    polls.locator("summary").click()
    expect(polls.locator("tbody tr")).to_have_count(job.poll_count)
    expect(polls.locator("tbody tr").last).to_contain_text("302")
    expect(page.locator("#detection-lag")).to_contain_text("at most")


def test_a_running_parent_job_lists_a_re_run_made_meanwhile_without_reloading(live, page, login, analyst):
    from jobs.services.jobs import job_rerun

    parent = job_create(
        owner=analyst,
        spec=parse_job_request({"kind": "do_eval", "script": "sleep_seconds", "parameters": {"seconds": 4}}),
    )
    login(page, "analyst")
    page.goto(live.url(f"/jobs/{parent.uuid}/"))
    mark_page(page)
    expect(page.locator("#job-children")).to_have_count(0)
    rerun = job_rerun(job=parent, actor=analyst)
    expect(page.locator("#job-children")).to_contain_text(str(rerun.uuid), timeout=LIVE_WAIT)
    assert_not_reloaded(page)


FIRST_SCREEN = {"width": 1280, "height": 720}  # a laptop's browser window


def test_the_history_list_starts_within_the_first_screen(live, page, login, analyst):
    conn = live_connection()
    for name in ("alpha", "beta", "gamma"):
        finished_job(analyst, conn, script_name=name)
    page.set_viewport_size(FIRST_SCREEN)
    login(page, "analyst")
    page.goto(live.url("/jobs/"))
    first_row = page.locator("#history-table tbody tr").first
    expect(first_row).to_be_visible()
    box = first_row.bounding_box()
    # The whole first row is on the first screen, without scrolling.
    assert box["y"] + box["height"] <= FIRST_SCREEN["height"], box
    # The filters are one click away, and the list still starts on the first screen with them open.
    page.click("#history-filters summary")
    expect(page.locator("#id_q")).to_be_visible()
    expect(page.locator("label.chip", has_text="Failed")).to_be_visible()


def test_a_json_typo_reads_the_same_under_the_field_and_in_the_preview(live, page, login, analyst):
    login(page, "analyst")
    open_compose(page, live)
    page.select_option("#id_script", "group_count")
    status, problems = page.locator("#parameters-status"), page.locator("#preview .preview-errors")
    for typo in ('{"a": 1,}', "{'a': 1}", '{\n  "n": pandas\n}', '{"a" 1}', '{"a": [1 2]}', '{"a": "\\q"}'):
        page.fill("#id_parameters", typo)
        expect(status).to_have_text(re.compile(r"^Invalid JSON at line"))
        expect(problems).to_contain_text("parameters: Invalid JSON")
        said = status.inner_text()
        expect(problems.locator("li", has_text="parameters:")).to_have_text(f"parameters: {said}")
