"""Pinning (owners, auditors as a legal hold, admins; audited; the history's filter) and the storage page."""

from __future__ import annotations

import pytest

from accounts.models import Membership, Team
from accounts.tokens import token_create
from audit.models import AuditEntry
from jobs.models import JobPin, JobResult, RetentionPolicy
from jobs.services.retention import purge_plan
from jobs.states import JobState
from tests.results_support import finish_async, make_job, store_result


@pytest.fixture
def team_world(make_user, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    team = Team.objects.create(name="Risk")
    users = {name: make_user(name) for name in ("owner", "teammate", "auditor", "outsider_auditor")}
    Membership.objects.create(user=users["owner"], team=team, role="analyst")
    Membership.objects.create(user=users["teammate"], team=team, role="analyst")
    Membership.objects.create(user=users["auditor"], team=team, role="auditor")
    Membership.objects.create(user=users["outsider_auditor"], team=Team.objects.create(name="Other"), role="auditor")
    job = make_job(users["owner"], team=team)
    return team, users, job


def _api(client, user, method: str, path: str, body=None):
    token = token_create(user=user, name="t")[1]
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    if method == "post":
        return client.post(path, body or {}, content_type="application/json", **headers)
    return getattr(client, method)(path, **headers)


@pytest.mark.django_db
def test_an_auditor_pins_a_job_of_their_team_with_a_reason_and_the_pin_is_audited(client, team_world):
    _team, users, job = team_world
    path = f"/api/v1/jobs/{job.uuid}/pin"
    assert _api(client, users["auditor"], "post", path, {"reason": ""}).status_code == 400
    assert _api(client, users["auditor"], "post", path, {}).status_code == 400
    assert not JobPin.objects.exists()
    answer = _api(client, users["auditor"], "post", path, {"reason": "legal hold 2026-17"})
    assert answer.status_code == 201
    assert answer.json()["pin"]["reason"] == "legal hold 2026-17"
    assert answer.json()["pin"]["pinned_by"] == "auditor"
    assert _api(client, users["owner"], "post", path, {"reason": "again"}).status_code == 409
    entry = AuditEntry.objects.get(action="pin")
    assert (entry.actor_username, entry.target_id, entry.details) == (
        "auditor",
        str(job.uuid),
        {"reason": "legal hold 2026-17"},
    )
    # A teammate who does not own it may see it but not unpin it; an auditor of another team does not see it.
    assert _api(client, users["teammate"], "delete", path).status_code == 403
    assert _api(client, users["outsider_auditor"], "delete", path).status_code == 404
    assert JobPin.objects.count() == 1
    assert _api(client, users["owner"], "delete", path).status_code == 200
    assert _api(client, users["owner"], "delete", path).status_code == 409
    unpinned = AuditEntry.objects.get(action="unpin")
    assert (unpinned.actor_username, unpinned.details["reason"]) == ("owner", "legal hold 2026-17")
    assert not JobPin.objects.exists()


@pytest.mark.django_db
def test_the_job_page_pins_and_unpins_and_the_history_filters_pinned_jobs(client, team_world):
    _team, users, job = team_world
    other = make_job(users["owner"])
    client.force_login(users["owner"])
    page = client.get(f"/jobs/{job.uuid}/").content.decode()
    assert 'id="pin-job"' in page
    assert client.post(f"/jobs/{job.uuid}/pin/", {"reason": "  "}).status_code == 302
    assert not JobPin.objects.exists()  # a blank reason is refused, and said so
    client.post(f"/jobs/{job.uuid}/pin/", {"reason": "keep for the quarterly review"})
    page = client.get(f"/jobs/{job.uuid}/").content.decode()
    assert "keep for the quarterly review" in page
    assert 'id="unpin-job"' in page
    history = client.get("/jobs/?pinned=on").content.decode()
    assert str(job.uuid) in history
    assert str(other.uuid) not in history
    listed = _api(client, users["owner"], "get", "/api/v1/jobs?pinned=true").json()["items"]
    assert [item["id"] for item in listed] == [str(job.uuid)]
    client.post(f"/jobs/{job.uuid}/unpin/")
    assert not JobPin.objects.exists()
    # The teammate sees the job, but not the pin form.
    client.force_login(users["teammate"])
    assert 'id="pin-job"' not in client.get(f"/jobs/{job.uuid}/").content.decode()


@pytest.mark.django_db
def test_the_storage_page_shows_bytes_and_jobs_per_team_and_connection_and_the_next_purge(
    client, team_world, make_user, settings
):
    from datetime import timedelta

    from django.utils import timezone

    settings.RETENTION_RESULT_DAYS, settings.RETENTION_JOB_DAYS = 30, 90
    team, users, queued = team_world
    admin = make_user("admin", is_staff=True, is_superuser=True)
    done = []
    for days, body in ((2, b'{"result": [1]}'), (40, b'{"result": [1, 2, 3, 4]}')):
        job = make_job(users["owner"], team=team)
        store_result(job, body)
        created = timezone.now() - timedelta(days=days)
        JobResult.objects.filter(job=job).update(stored_at=created)
        done.append(finish_async(job, created=created, queue=1, oml=2, fetch=1))
    failed = finish_async(
        make_job(users["teammate"], team=team), created=timezone.now(), queue=1, oml=1, fetch=0, state=JobState.FAILED
    )
    assert failed.state == JobState.FAILED
    client.force_login(users["owner"])
    assert client.get("/storage/").status_code == 403
    client.force_login(admin)
    page = client.get("/storage/").content.decode()
    stored = sum(JobResult.objects.values_list("size_bytes", flat=True))
    assert stored == 15 + 24
    assert f'title="{stored} bytes"' in page
    # Risk on the test connection: 3 finished (2 succeeded, 1 failed), 1 still queued, 2 results.
    row = page.split("<td>Risk</td>", 1)[1].split("</tr>", 1)[0]
    cells = [cell.split(">", 1)[1].split("<", 1)[0] for cell in row.split('<td class="num"')[1:]]
    assert cells[:3] == ["3", "1", "2"]
    plan = purge_plan()
    assert (plan.results, plan.result_bytes, plan.jobs) == (1, 24, 0)
    retention_row = page.split('id="retention-table"', 1)[1].split("<td>Risk", 1)[1].split("</tr>", 1)[0]
    assert "30 days" in retention_row
    assert "90 days" in retention_row
    assert queued.state == JobState.QUEUED


@pytest.mark.django_db
def test_retention_policy_changes_by_an_admin_are_audited_and_a_result_kept_longer_than_its_job_is_refused(
    client, make_user, settings
):
    settings.RETENTION_RESULT_DAYS, settings.RETENTION_JOB_DAYS = 30, 90
    admin = make_user("admin", is_staff=True, is_superuser=True)
    team = Team.objects.create(name="Risk")
    client.force_login(admin)
    refused = client.post("/admin/jobs/retentionpolicy/add/", {"team": team.pk, "result_days": 60, "job_days": 20})
    assert refused.status_code == 200
    assert "at least as long as results" in refused.content.decode()
    assert not RetentionPolicy.objects.exists()
    made = client.post("/admin/jobs/retentionpolicy/add/", {"team": team.pk, "result_days": 7, "job_days": ""})
    assert made.status_code == 302
    policy = RetentionPolicy.objects.get(team=team)
    assert (policy.result_days, policy.job_days) == (7, None)
    entry = AuditEntry.objects.get(action="retention_changed")
    assert entry.details["team"] == "Risk"
    assert entry.details["result_days"] == 7
    assert entry.actor_username == "admin"


@pytest.mark.browser
def test_an_owner_pins_a_job_in_the_browser_and_an_admin_reads_the_storage_page(live, page, login, make_user):
    from playwright.sync_api import expect

    from jobs.models import Connection

    owner = make_user("pin-owner")
    make_user("storage-admin", is_staff=True, is_superuser=True)
    job = make_job(owner, team=None)
    Connection.objects.filter(pk=job.connection_id).update(name="Pinned connection")
    login(page, "pin-owner")
    page.goto(live.url(f"/jobs/{job.uuid}/"))
    page.fill("#id_pin_reason", "evidence for the review")
    page.click("#pin-job")
    expect(page.locator("#pin-status")).to_contain_text("evidence for the review")
    expect(page.locator("#unpin-job")).to_be_visible()
    page.goto(live.url("/jobs/"))
    page.click("#history-filters summary")
    page.check("#id_pinned")
    page.click("#history-filters button[type=submit]")
    expect(page.locator(f"a[href='/jobs/{job.uuid}/']").first).to_be_visible()
    assert page.locator("nav.mainnav a", has_text="Storage").count() == 0
    page.context.clear_cookies()
    login(page, "storage-admin")
    page.click("nav.mainnav a:has-text('Storage')")
    expect(page.locator("#storage-table")).to_contain_text("Pinned connection")
    expect(page.locator("#retention-table")).to_contain_text("No team")
