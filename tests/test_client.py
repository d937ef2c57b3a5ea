"""The Python client (omlpy_client.Client) against the running system, and the boundary between the client and
the server: neither imports anything of the other."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from accounts.tokens import token_create
from jobs.models import Job
from omlpy_client import (
    AuthenticationError,
    Client,
    ConflictError,
    InvalidRequestError,
    JobNotSucceededError,
    NotFoundError,
    WaitTimeoutError,
)
from tests.results_support import table_rows
from tests.stack import ROOT

SERVER_PACKAGES = ("accounts", "jobs", "omlengine", "omlpy_dashboard")
CLIENT_PACKAGE = ROOT / "omlpy_client" / "src" / "omlpy_client"


@pytest.fixture
def client(live, analyst):
    _, secret = token_create(user=analyst, name="notebook")
    with Client(live.base_url, secret, retry_backoff=0.05, poll_interval=0.5) as connected:
        yield connected


def test_a_submitted_job_is_waited_on_and_its_dataframe_equals_the_result_pages_rows(client, analyst, live):
    from django.test import Client as Browser

    seen: list[str] = []
    job = client.submit(
        "group_apply",
        "group_count",
        input="select * from IRIS",
        group_by="Species",
        order_by="Sepal_Length",
        parameters={"oml_input_type": "pandas.DataFrame"},
        parallel_flag=True,
    )
    assert job.wait(timeout=120, on_change=lambda changed: seen.append(changed.state)) is job
    assert job.succeeded
    assert seen[0] == "queued"
    assert seen[-1] == "succeeded"
    frame = job.dataframe()
    browser = Browser()
    browser.force_login(analyst)
    page = table_rows(browser.get(f"/jobs/{job.id}/result/").content.decode(), "result-table")
    header, *rows = page
    assert header == ["#", *frame.columns]
    as_text = [[str(value) for value in row] for row in frame.itertuples(index=False)]
    assert [row[1:] for row in rows] == as_text
    assert sorted(frame["COUNT"].tolist()) == [50, 50, 50]
    assert job.result_json()["result"].keys() == set(frame["group"])


def test_jobs_reads_every_page_through_the_cursor_with_the_history_filters(client, analyst):
    from jobs.services.jobs import job_create
    from jobs.services.specs import parse_job_request

    made = [
        job_create(owner=analyst, spec=parse_job_request({"kind": "index_apply", "script": "timer", "times": 1}))
        for _ in range(5)
    ]
    listed = [job.id for job in client.jobs(kind="index_apply", page_size=2)]
    assert listed == [str(job.uuid) for job in reversed(made)]
    assert [job.id for job in client.jobs(limit=3, page_size=2)] == listed[:3]
    assert list(client.jobs(kind="do_eval")) == []
    assert len(list(client.jobs(owner="analyst", script="timer", connection="Embedded engine"))) == 5
    assert len(list(client.jobs(since="2000-01-01", until="2100-01-01T00:00:00Z"))) == 5
    assert list(client.jobs(until="2000-01-01")) == []


def test_errors_are_exceptions_that_say_what_the_server_said(client, live):
    with pytest.raises(InvalidRequestError) as invalid:
        client.submit("group_apply", "group_count", input="select * from IRIS")
    assert invalid.value.status == 400
    assert "groupBy" in invalid.value.errors
    assert "groupBy" in str(invalid.value)
    with pytest.raises(NotFoundError):
        client.job("00000000-0000-4000-8000-000000000000")
    with pytest.raises(AuthenticationError) as refused:
        Client(live.base_url, "omlpy_not-a-token").whoami()
    assert refused.value.status == 401
    with pytest.raises(TypeError, match="unknown job field"):
        client.submit("do_eval", "return_df", colour="blue")
    assert Job.objects.count() == 0


def test_cancel_rerun_and_clone_from_python(client):
    job = client.submit("do_eval", "timer", parameters={"seconds": 600})
    with pytest.raises(WaitTimeoutError):
        job.wait(timeout=0.5)
    assert job.cancel().wait(timeout=60).state == "cancelled"
    with pytest.raises(ConflictError):
        job.cancel()
    with pytest.raises(JobNotSucceededError, match="cancelled"):
        job.result_json()
    again = job.rerun()
    assert (again.parent, again.request) == (job.id, job.request)
    again.cancel()
    quick = job.clone(parameters={"seconds": 0.2})
    assert quick.parent == job.id
    assert quick.wait(timeout=120).succeeded
    assert quick.result_json() == {"result": {"slept": 0.2}}


def test_a_download_is_streamed_to_a_file_named_by_its_format(client, tmp_path):
    job = client.submit("do_eval", "return_df", parameters={"num": 3, "scale": 2}).wait(timeout=120)
    saved = job.download(tmp_path / "rows.csv")
    assert saved.read_text().splitlines() == ["ID,RES", "0,0.0", "1,0.5", "2,1.0"]
    assert json.loads(job.download(tmp_path / "rows.json").read_bytes()) == job.result_json()


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names


def test_the_client_imports_nothing_of_the_server_nor_the_server_anything_of_the_client():
    client_files = sorted(CLIENT_PACKAGE.rglob("*.py"))
    assert len(client_files) > 5
    for path in client_files:
        assert not _imports(path) & {*SERVER_PACKAGES, "django", "ninja"}, path
    server_files = [path for package in SERVER_PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    assert len(server_files) > 50
    for path in server_files:
        assert "omlpy_client" not in _imports(path), path
