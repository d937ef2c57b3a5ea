"""The JSON API over real HTTP: Bearer tokens, validation per kind, keyset pages, result, cancel, re-run."""

from __future__ import annotations

import json

import pytest
import requests

from accounts.tokens import token_create
from jobs.models import Job
from jobs.states import TERMINAL_STATES, JobState
from tests.stack import wait_for


@pytest.fixture
def api(live, analyst):
    _, secret = token_create(user=analyst, name="tests")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {secret}"

    def call(method: str, path: str, **kwargs) -> requests.Response:
        return session.request(method, live.url(f"/api/v1{path}"), timeout=30, **kwargs)

    return call


def wait_api_terminal(api, job_id: str) -> dict:
    def ended():
        body = api("GET", f"/jobs/{job_id}").json()
        return body if body["state"] in TERMINAL_STATES else None

    return wait_for(ended, timeout=90, what=f"job {job_id} to end")


def test_a_job_submitted_through_the_api_runs_and_its_result_is_the_body_as_received(api):
    answer = api(
        "POST",
        "/jobs",
        json={
            "kind": "group_apply",
            "script": "group_count",
            "input": "select * from IRIS",
            "groupBy": "Species",
            "orderBy": "Sepal_Length",
            "parameters": {"oml_input_type": "pandas.DataFrame"},
            "parallelFlag": True,
        },
    )
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["state"] == "queued"
    assert created["request"]["parameters"] == '{"oml_input_type":"pandas.DataFrame"}'
    job = wait_api_terminal(api, created["id"])
    assert job["state"] == "succeeded"
    assert [t["to_state"] for t in job["transitions"]] == ["submitting", "pending", "fetching", "succeeded"]
    assert job["result"]["shape"] in ("groups", "")
    body = api("GET", f"/jobs/{created['id']}/result")
    assert body.status_code == 200
    counts = {label: group["COUNT"]["0"] for label, group in body.json()["result"].items()}
    assert sorted(counts.values()) == [50, 50, 50]
    assert body.headers["X-Result-SHA256"] == job["result"]["sha256"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"kind": "row_apply", "script": "group_count", "input": "select * from IRIS"}, "rows"),
        ({"kind": "do_eval", "script": "return_df", "parameters": "[1, 2]"}, "parameters"),
        ({"kind": "do_eval", "script": "return_df", "parameters": '{"n": 1,}'}, "parameters"),
        ({"kind": "group_apply", "script": "group_count", "input": "select 1"}, "groupBy"),
        ({"kind": "index_apply", "script": "compute_random_mean", "times": 0}, "times"),
        ({"kind": "do_eval", "script": "return_df", "input": "select 1"}, "input"),
        ({"kind": "do_eval", "script": "return_df", "timeout": 10}, "timeout"),
        ({"kind": "nonsense", "script": "return_df"}, "kind"),
        ({"kind": "do_eval", "script": "drop table x;"}, "script"),
        # A connection that does not exist answers 404 (tests/test_input_limits_api.py).
        ({"kind": "do_eval", "script": "return_df", "connection": ""}, "connection"),
        ({"kind": "do_eval", "script": "return_df", "service": "ULTRA"}, "service"),
    ],
)
def test_bad_requests_get_a_400_naming_the_field_and_leave_no_job(api, payload, field):
    answer = api("POST", "/jobs", json=payload)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["detail"]
    assert field in body["errors"], body
    assert Job.objects.count() == 0


def test_a_body_that_is_not_json_gets_a_400(api):
    answer = api("POST", "/jobs", data="{not json", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["detail"]


def test_without_a_token_the_api_answers_401(live):
    answer = requests.get(live.url("/api/v1/jobs"), timeout=10)
    assert answer.status_code == 401
    wrong = requests.get(live.url("/api/v1/jobs"), headers={"Authorization": "Bearer omlpy_wrong"}, timeout=10)
    assert wrong.status_code == 401


def test_the_job_list_pages_by_cursor_and_filters(api, analyst):
    from jobs.services.jobs import job_create
    from jobs.services.specs import parse_job_request

    made = [
        job_create(owner=analyst, spec=parse_job_request({"kind": "do_eval", "script": "return_df"})) for _ in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        page = api("GET", "/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [str(job.uuid) for job in reversed(made)]
    filtered = api("GET", "/jobs", params={"kind": "index_apply"}).json()
    assert filtered["items"] == []
    assert api("GET", "/jobs", params={"cursor": "garbage!"}).status_code == 400


def test_cancel_and_rerun_through_the_api(api):
    created = api("POST", "/jobs", json={"kind": "do_eval", "script": "timer", "parameters": {"seconds": 600}}).json()
    wait_for(lambda: api("GET", f"/jobs/{created['id']}").json()["state"] == "pending", what="pending")
    cancelled = api("POST", f"/jobs/{created['id']}/cancel")
    assert cancelled.status_code == 200
    assert wait_api_terminal(api, created["id"])["state"] == JobState.CANCELLED
    assert api("POST", f"/jobs/{created['id']}/cancel").status_code == 409
    again = api("POST", f"/jobs/{created['id']}/rerun")
    assert again.status_code == 201
    assert again.json()["parent"] == created["id"]
    assert again.json()["request"] == created["request"]
    api("POST", f"/jobs/{again.json()['id']}/cancel")


def test_another_users_job_answers_404(api, make_user):
    from accounts.models import Membership, Team
    from jobs.models import Connection
    from jobs.services.jobs import job_create
    from jobs.services.specs import parse_job_request

    stranger = make_user("stranger")
    # Of another team, to which the connection is granted too.
    elsewhere = Team.objects.create(name="Elsewhere")
    Membership.objects.create(user=stranger, team=elsewhere, role=Membership.Role.ANALYST)
    Connection.objects.get().teams.add(elsewhere)
    theirs = job_create(owner=stranger, spec=parse_job_request({"kind": "do_eval", "script": "return_df"}))
    for method, path in [
        ("GET", f"/jobs/{theirs.uuid}"),
        ("GET", f"/jobs/{theirs.uuid}/result"),
        ("POST", f"/jobs/{theirs.uuid}/cancel"),
        ("POST", f"/jobs/{theirs.uuid}/rerun"),
    ]:
        assert api(method, path).status_code == 404, path


def test_connections_and_their_scripts_are_listed(api):
    connections = api("GET", "/connections").json()
    assert [c["name"] for c in connections] == ["Embedded engine"]
    assert "password" not in json.dumps(connections).lower()
    scripts = api("GET", f"/connections/{connections[0]['id']}/scripts").json()
    names = {s["name"] for s in scripts}
    assert {"group_count", "compute_random_mean", "return_df"} <= names
    group_count = next(s for s in scripts if s["name"] == "group_count")
    assert "def group_count" in group_count["script"]


def test_a_submitted_job_keeps_the_scripts_source_and_its_hash(api):
    import hashlib

    created = api(
        "POST", "/jobs", json={"kind": "do_eval", "script": "return_df", "parameters": {"num": 2, "scale": 1}}
    )
    job = wait_api_terminal(api, created.json()["id"])
    stored = Job.objects.get(uuid=job["id"])
    assert "def return_df" in stored.script_source
    assert stored.script_sha256 == hashlib.sha256(stored.script_source.encode()).hexdigest() == job["script_sha256"]


def test_the_openapi_document_describes_the_routes(live):
    document = requests.get(live.url("/api/v1/openapi.json"), timeout=10).json()
    assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/result"} <= set(document["paths"])
