"""Pages with job data and every download are sent with `Cache-Control: no-store`, so that no browser or proxy
keeps a copy. The routes are found by walking the URL resolver: a new job-data route is covered by being added."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.models import Membership, Team
from jobs.models import Job
from jobs.services.jobs import connection_save, job_result_store
from jobs.states import JobKind, JobState

pytestmark = pytest.mark.django_db

# Job data: every route of these namespaces, these routes, and the API's job endpoints.
JOB_DATA_NAMESPACES = ("jobs:", "results:")
JOB_DATA_ROUTES = {"audit", "audit_export"}
API_JOB_PATH = re.compile(r"^api/v1/jobs(/|$)")
# Routes that show nothing without a query.
QUERIES = {"results:compare": "?a={uuid}&b={uuid}", "jobs:history_rows": "?id={uuid}"}


def _routes() -> list[tuple[str, str]]:
    """(name, regex) of every route, the regex from the root with its anchors removed."""
    found: list[tuple[str, str]] = []

    def walk(patterns, prefix: str, namespace: str) -> None:
        for pattern in patterns:
            regex = pattern.pattern.regex.pattern.replace("^", "").replace(r"\Z", "").rstrip("$")
            if isinstance(pattern, URLResolver):
                walk(
                    pattern.url_patterns,
                    prefix + regex,
                    namespace + (f"{pattern.namespace}:" if pattern.namespace else ""),
                )
            elif isinstance(pattern, URLPattern):
                found.append((namespace + (pattern.name or ""), prefix + regex))

    walk(get_resolver().url_patterns, "", "")
    return found


def _is_job_data(name: str, regex: str) -> bool:
    if name.startswith("api:"):
        return bool(API_JOB_PATH.match(regex))
    return name.startswith(JOB_DATA_NAMESPACES) or name in JOB_DATA_ROUTES


def _paths(name: str, regex: str, job_uuid: str) -> list[str]:
    """Concrete paths of a route: a job's id in each job argument, each alternative of a choice taken."""
    group = re.search(r"\(\?P<(?P<arg>\w+)>(?P<body>[^()]*)\)", regex)
    if group is None:
        return ["/" + regex.replace("\\", "") + QUERIES.get(name, "").format(uuid=job_uuid)]
    arg, body = group["arg"], group["body"]
    if arg in ("job_uuid", "job_id", "other_id"):
        choices = [job_uuid]
    elif arg == "fmt":
        choices = ["json", "csv", "xlsx", "parquet"]  # the API's download formats (a plain path argument)
    elif re.fullmatch(r"[\w|]+", body):
        choices = body.split("|")
    else:
        pytest.fail(f"{name}: teach this test a value for the argument {arg!r}")
    head, tail = regex[: group.start()], regex[group.end() :]
    return [path for choice in choices for path in _paths(name, head + choice + tail, job_uuid)]


@pytest.fixture
def admin_client(client, make_user):
    admin = make_user("root", is_staff=True, is_superuser=True)
    Membership.objects.create(user=admin, team=Team.objects.create(name="Risk"), role=Membership.Role.ANALYST)
    client.force_login(admin)
    conn = connection_save(name="c", base_url="http://127.0.0.1:9", username="U", password="pw", is_default=True)
    job = Job.objects.create(owner=admin, connection=conn, kind=JobKind.DO_EVAL, script_name="return_df")
    # Arranged as finished with a stored result (set-up, not a move under test).
    Job.objects.filter(pk=job.pk).update(state=JobState.SUCCEEDED, finished_at=job.created_at)
    job_result_store(job_id=job.pk, chunks=[b'[{"A":1,"B":"x"}]'], content_type="application/json", row_count=1)
    client.job_uuid = str(job.uuid)
    return client


def test_every_job_data_page_and_download_is_sent_with_no_store(admin_client, settings):
    settings.OML_GET_RETRIES = 0
    routes = [(name, regex) for name, regex in _routes() if _is_job_data(name, regex)]
    names = {name for name, _ in routes}
    # The walk finds what it must: pages, fragments, every download, the audit export, the API's job endpoints.
    assert {
        "jobs:history",
        "jobs:detail_live",
        "results:result_download",
        "results:result_raw",
        "results:analytics_data",
        "audit_export",
        "api:get_result",
        "api:list_jobs",
    } <= names
    missing = []
    for name, regex in routes:
        for path in _paths(name, regex, admin_client.job_uuid):
            response = admin_client.get(path)
            if response.status_code == 405:  # an action: POST is what it takes
                response = admin_client.post(path)
            assert response.status_code < 500, f"{path}: {response.status_code}"
            if "no-store" not in response.get("Cache-Control", ""):
                missing.append(f"{name} {path} ({response.status_code}): {response.get('Cache-Control')!r}")
    assert missing == []


def test_the_downloads_say_no_store_beside_their_own_headers(admin_client):
    uuid = admin_client.job_uuid
    for path in (
        f"/jobs/{uuid}/result.json",
        f"/jobs/{uuid}/result.xlsx",
        f"/api/v1/jobs/{uuid}/result",
        "/audit/export.csv",
    ):
        response = admin_client.get(path)
        assert response.status_code == 200, path
        assert response["Cache-Control"] == "no-store", path
        assert "Content-Disposition" in response or path.startswith("/api/"), path
