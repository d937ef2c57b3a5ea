"""Connection passwords and API tokens appear in no page, API answer, log line, audit entry or stored detail.

A stack of its own logs at DEBUG so that every line any process could write is there to be searched.
"""

from __future__ import annotations

import logging
import secrets

import pytest
import requests
from django.contrib.auth.hashers import make_password

from accounts.models import Membership, Team
from accounts.tokens import token_create
from audit.models import AuditEntry
from jobs.models import Connection, Job, JobTransition
from jobs.services.jobs import connection_save
from omlengine.models import EngineUser
from tests.stack import wait_for


@pytest.fixture
def debug_stack(own_stack):
    return own_stack({"LOG_LEVEL": "DEBUG"})


def test_passwords_and_tokens_appear_in_no_page_api_answer_log_or_audit_entry(debug_stack, make_user, client, caplog):
    caplog.set_level(logging.DEBUG)
    password = "Pw-" + secrets.token_urlsafe(18)
    EngineUser.objects.filter(username="OMLUSER").update(password=make_password(password))
    team = Team.objects.create(name="Risk")
    connection_save(
        name="Engine",
        base_url=debug_stack.base_url,
        username="OMLUSER",
        password=password,
        is_default=True,
        teams=[team],
    )
    analyst, auditor = make_user("ana"), make_user("aud")
    admin = make_user("root", is_staff=True, is_superuser=True)
    Membership.objects.create(user=analyst, team=team, role="analyst")
    Membership.objects.create(user=auditor, team=team, role="auditor")
    _, token = token_create(user=analyst, name="ci")

    # A job submitted over the API with the token, run end to end by the real worker and engine.
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    created = api.post(
        debug_stack.url("/api/v1/jobs"),
        json={"kind": "do_eval", "script": "return_df", "parameters": {"num": 3, "scale": 2}, "asyncFlag": True},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    job = wait_for(
        lambda: Job.objects.filter(uuid=job_id, state__in=["succeeded", "failed", "timed_out"]).first(),
        timeout=120,
        what="the job to end",
    )
    assert job.state == "succeeded", job.last_error
    answers = [created.text]
    for path in ("/api/v1/jobs", f"/api/v1/jobs/{job_id}", f"/api/v1/jobs/{job_id}/result", "/api/v1/connections"):
        response = api.get(debug_stack.url(path), timeout=30)
        assert response.status_code == 200, path
        answers.append(response.text)
    answers.append(api.get(debug_stack.url("/api/v1/openapi.json"), timeout=30).text)
    # A wrong token and a token in the wrong place are refused without being echoed.
    bad = requests.get(debug_stack.url("/api/v1/jobs"), headers={"Authorization": f"Bearer {token}x"}, timeout=10)
    assert bad.status_code == 401
    answers.append(bad.text)

    # The pages, as each role sees them (in-process, so that this process's log lines are captured too).
    connection = Connection.objects.get(name="Engine")
    pages = {
        analyst: [
            *("/jobs/", "/jobs/new/", "/account/", "/account/tokens/"),
            *(f"/jobs/{job_id}/", f"/jobs/{job_id}/result/", f"/jobs/{job_id}/result.csv", f"/jobs/{job_id}/clone/"),
        ],
        auditor: ["/jobs/", f"/jobs/{job_id}/", "/audit/", "/audit/export.csv"],
        admin: [
            *("/audit/", "/audit/export.csv", "/analytics/", "/admin/accounts/apitoken/", "/admin/audit/auditentry/"),
            *("/admin/jobs/connection/", f"/admin/jobs/connection/{connection.pk}/change/"),
        ],
    }
    for user, paths in pages.items():
        client.force_login(user)
        for path in paths:
            response = client.get(path)
            assert response.status_code == 200, (user, path, response.status_code)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            answers.append(body.decode(errors="replace"))
    # An admin changing the connection: the audit entry names the change, never the value.
    client.force_login(admin)
    client.post(
        f"/admin/jobs/connection/{connection.pk}/change/",
        {
            "name": "Engine",
            "base_url": debug_stack.base_url,
            "api_version": "v2",
            "username": "OMLUSER",
            "password": password,
            "poll_budget": 20,
            "is_default": "on",
        },
    )
    assert AuditEntry.objects.filter(action="connection_changed").exists()

    stored = [
        str(list(AuditEntry.objects.values_list("details", "target_id"))),
        str(list(JobTransition.objects.values_list("detail", "reason"))),
        str(list(Job.objects.values_list("last_error", "oml_job_url", "parameters"))),
    ]
    logs = [caplog.text] + [debug_stack.log(name) for name in ("web", "worker", "engine")]
    assert "DEBUG" in "".join(logs)  # the processes did log at the level searched

    for secret, what in ((password, "the connection password"), (token, "the API token")):
        for kind, texts in (("an answer", answers), ("a log", logs), ("a stored row", stored)):
            leaks = [text[max(0, text.find(secret) - 80) : text.find(secret) + 80] for text in texts if secret in text]
            assert leaks == [], f"{what} appears in {kind}: {leaks[0]!r}"
    assert Connection.objects.get(pk=connection.pk).get_password() == password  # it was really in use
