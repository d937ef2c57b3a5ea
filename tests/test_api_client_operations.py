"""The API operations the command line and the Python client need: submissions with an Idempotency-Key, clone
with changes, compare, whoami, and the result in every download format, the same bytes as the pages send."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, timedelta

import pytest
import requests
from django.utils import timezone

from accounts.models import Membership, Team
from accounts.tokens import token_create
from audit.models import AuditEntry
from jobs.models import IdempotencyKey, Job
from jobs.states import JobKind
from tests.results_support import succeeded_job_with_result

GROUP_COUNT = {
    "kind": "group_apply",
    "script": "group_count",
    "input": "select * from IRIS",
    "groupBy": "Species",
    "parameters": {"oml_input_type": "pandas.DataFrame"},
}
RECORDS = [
    {"SEPAL_LENGTH": 5.1, "SPECIES": "setosa", "COUNT": 3, "OK": True, "NOTE": None},
    {"SEPAL_LENGTH": 4.9, "SPECIES": 'versi,color "q"', "COUNT": 7, "OK": False, "NOTE": "=1+2", "EXTRA": [1, 2]},
    {"SEPAL_LENGTH": -1, "SPECIES": "ünïcødé", "COUNT": 12345678901, "OK": True, "NOTE": "x"},
]
GROUPS = {
    "versicolor_8": {"SEPAL_LENGTH": {"0": 5.7}, "SPECIES": {"0": "versicolor"}, "COUNT": {"0": 5}},
    "setosa_1": {
        "SEPAL_LENGTH": {"0": 4.3, "1": 4.4},
        "SPECIES": {"0": "setosa", "1": "setosa"},
        "COUNT": {"0": 1, "1": 2},
    },
}


@pytest.fixture
def api(live, analyst):
    _, secret = token_create(user=analyst, name="tests")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {secret}"

    def call(method: str, path: str, **kwargs) -> requests.Response:
        return session.request(method, live.url(f"/api/v1{path}"), timeout=30, **kwargs)

    return call


@pytest.fixture
def bearer(analyst):
    """Headers for Django's test client: the analyst's API token."""
    _, secret = token_create(user=analyst, name="tests")
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


# --- Idempotency-Key ------------------------------------------------------------------------------


def test_a_repeated_idempotency_key_answers_the_first_job_and_creates_no_other(api):
    first = api("POST", "/jobs", json=GROUP_COUNT, headers={"Idempotency-Key": "retry-1"})
    again = api("POST", "/jobs", json=GROUP_COUNT, headers={"Idempotency-Key": "retry-1"})
    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert Job.objects.count() == 1
    other = api("POST", "/jobs", json=GROUP_COUNT, headers={"Idempotency-Key": "retry-2"})
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]
    assert Job.objects.count() == 2


def test_concurrent_requests_with_one_key_create_one_job(api):
    answers: list[requests.Response] = []

    def send() -> None:
        answers.append(api("POST", "/jobs", json=GROUP_COUNT, headers={"Idempotency-Key": "raced"}))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answer.status_code for answer in answers) == [200, 200, 200, 201], [a.text for a in answers]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert Job.objects.count() == 1
    assert AuditEntry.objects.filter(action="submit").count() == 1


def test_a_key_reused_for_another_request_is_refused_and_creates_nothing(api):
    assert api("POST", "/jobs", json=GROUP_COUNT, headers={"Idempotency-Key": "k"}).status_code == 201
    changed = api("POST", "/jobs", json={**GROUP_COUNT, "groupBy": "Petal_Width"}, headers={"Idempotency-Key": "k"})
    assert changed.status_code == 422
    assert "different request" in changed.json()["detail"]
    assert Job.objects.count() == 1


def test_a_key_older_than_a_day_creates_a_new_job(api):
    first = api("POST", "/jobs", json=GROUP_COUNT, headers={"Idempotency-Key": "daily"}).json()
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(days=1, minutes=1))
    later = api("POST", "/jobs", json=GROUP_COUNT, headers={"Idempotency-Key": "daily"})
    assert later.status_code == 201
    assert later.json()["id"] != first["id"]
    assert IdempotencyKey.objects.get().job.uuid.hex == later.json()["id"].replace("-", "")


def test_a_malformed_key_or_an_invalid_request_with_a_key_is_refused_and_leaves_nothing(api):
    bad_key = api("POST", "/jobs", json=GROUP_COUNT, headers={"Idempotency-Key": "x" * 256})
    assert bad_key.status_code == 400
    assert bad_key.json()["detail"]
    invalid = api("POST", "/jobs", json={**GROUP_COUNT, "groupBy": ""}, headers={"Idempotency-Key": "v"})
    assert invalid.status_code == 400
    assert "groupBy" in invalid.json()["errors"]
    assert Job.objects.count() == 0
    assert IdempotencyKey.objects.count() == 0


# --- Clone ------------------------------------------------------------------------------------------


def test_clone_changes_fields_merges_parameters_and_links_the_parent(api):
    original = api("POST", "/jobs", json={**GROUP_COUNT, "orderBy": "Sepal_Length"}).json()
    clone = api(
        "POST",
        f"/jobs/{original['id']}/clone",
        json={"parameters": {"extra": 5, "oml_input_type": None}, "orderBy": None, "service": "MEDIUM"},
    )
    assert clone.status_code == 201, clone.text
    body = clone.json()
    assert body["parent"] == original["id"]
    assert body["request"]["parameters"] == '{"extra":5}'
    assert body["request"]["groupBy"] == "Species"
    assert "orderBy" not in body["request"]
    assert body["request"]["service"] == "MEDIUM"
    assert AuditEntry.objects.filter(action="clone", target_id=body["id"]).exists()


def test_a_clone_that_makes_the_request_invalid_gets_a_400_and_no_job(api):
    original = api("POST", "/jobs", json=GROUP_COUNT).json()
    refused = api("POST", f"/jobs/{original['id']}/clone", json={"kind": "do_eval"})
    assert refused.status_code == 400
    assert {"input", "groupBy"} <= set(refused.json()["errors"])
    assert Job.objects.count() == 1


def test_an_auditor_may_not_clone(live, make_user, analyst):
    from jobs.services.jobs import job_create
    from jobs.services.specs import parse_job_request

    job = job_create(owner=analyst, spec=parse_job_request({"kind": "do_eval", "script": "return_df"}))
    # An auditor of the job's team: one who may read it, and so is told 403, not 404.
    auditor = make_user("reviewer")
    Membership.objects.create(user=auditor, team=job.team, role=Membership.Role.AUDITOR)
    _, secret = token_create(user=auditor, name="audit")
    refused = requests.post(
        live.url(f"/api/v1/jobs/{job.uuid}/clone"), json={}, headers={"Authorization": f"Bearer {secret}"}, timeout=30
    )
    assert refused.status_code == 403
    assert Job.objects.count() == 1


# --- Compare and whoami ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_compare_names_the_differing_fields_the_timing_and_the_cells(client, analyst, bearer):
    a = succeeded_job_with_result(analyst, RECORDS, kind=JobKind.TABLE_APPLY, input_sql="select * from IRIS")
    changed = [dict(RECORDS[0], COUNT=4), *RECORDS[1:]]
    b = succeeded_job_with_result(analyst, changed, kind=JobKind.TABLE_APPLY, input_sql="select * from IRIS x")
    report = client.get(f"/api/v1/jobs/{a.uuid}/compare/{b.uuid}", **bearer).json()
    differing = {row["field"]: (row["a"], row["b"]) for row in report["request"] if row["differs"]}
    assert differing == {"Input (SQL)": ("select * from IRIS", "select * from IRIS x")}
    assert [row["phase"] for row in report["timing"]] == [
        "Queue wait",
        "OML time",
        "Detection lag (at most)",
        "Fetch time",
        "Total",
    ]
    assert report["result"]["same"] is False
    assert report["result"]["differing_cells"] == 1
    assert report["result"]["diffs"] == [{"row": 1, "key": "", "column": "COUNT", "a": "3", "b": "4"}]
    assert (report["a"]["id"], report["b"]["id"]) == (str(a.uuid), str(b.uuid))


@pytest.mark.django_db
def test_compare_answers_404_for_a_job_the_user_may_not_see(client, analyst, bearer, make_user):
    mine = succeeded_job_with_result(analyst, RECORDS)
    theirs = succeeded_job_with_result(make_user("stranger"), RECORDS)
    assert client.get(f"/api/v1/jobs/{mine.uuid}/compare/{theirs.uuid}", **bearer).status_code == 404


@pytest.mark.django_db
def test_whoami_names_the_user_their_teams_and_the_token(client, analyst):
    Membership.objects.create(user=analyst, team=Team.objects.create(name="Risk"), role=Membership.Role.ANALYST)
    token, secret = token_create(user=analyst, name="laptop")
    me = client.get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {secret}").json()
    assert me["username"] == "analyst"
    # The analyst fixture is in the analysts' team already.
    assert me["teams"] == [{"team": "Analysts", "role": "analyst"}, {"team": "Risk", "role": "analyst"}]
    assert me["can_submit"] is True
    assert me["token"]["name"] == "laptop"
    assert me["token"]["prefix"] == token.prefix
    assert secret not in json.dumps(me)
    client.force_login(analyst)
    assert client.get("/api/v1/whoami").json()["token"] is None


# --- Downloads in every format ---------------------------------------------------------------------


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["json", "csv", "xlsx", "parquet"])
def test_the_api_download_is_the_same_bytes_as_the_page_download(client, analyst, bearer, fmt):
    job = succeeded_job_with_result(analyst, GROUPS, kind=JobKind.GROUP_APPLY, script="group_count")
    from_api = client.get(f"/api/v1/jobs/{job.uuid}/result.{fmt}", **bearer)
    assert from_api.status_code == 200
    client.force_login(analyst)
    from_page = client.get(f"/jobs/{job.uuid}/result.{fmt}")
    assert _body(from_api) == _body(from_page)
    assert from_api["Content-Type"] == from_page["Content-Type"]
    assert f"group_count-{job.uuid}.{fmt}" in from_api["Content-Disposition"]
    assert AuditEntry.objects.filter(action="result_download", details__via="api", details__format=fmt).exists()


@pytest.mark.django_db
def test_an_xlsx_download_is_dated_when_the_result_was_stored_so_its_bytes_never_change(client, analyst, bearer):
    import zipfile

    from openpyxl import load_workbook

    job = succeeded_job_with_result(analyst, GROUPS, kind=JobKind.GROUP_APPLY, script="group_count")
    stored = job.result.stored_at.astimezone(UTC).replace(tzinfo=None, microsecond=0)
    body = _body(client.get(f"/api/v1/jobs/{job.uuid}/result.xlsx", **bearer))
    entries = zipfile.ZipFile(io.BytesIO(body)).infolist()
    # ZIP dates count seconds in twos.
    assert {entry.date_time for entry in entries} == {(*stored.timetuple()[:5], stored.second // 2 * 2)}
    properties = load_workbook(io.BytesIO(body), read_only=True).properties
    assert (properties.created, properties.modified) == (stored, stored)


@pytest.mark.django_db
def test_a_job_without_a_result_answers_404_naming_its_state(client, analyst, bearer):
    from tests.results_support import make_job

    job = make_job(analyst)
    answer = client.get(f"/api/v1/jobs/{job.uuid}/result.csv", **bearer)
    assert answer.status_code == 404
    assert answer.json()["detail"] == "This job has no result (state: queued)."
