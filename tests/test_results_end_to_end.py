"""Real engine jobs, run by the real worker, viewed and downloaded from the real web server."""

import csv
import io
import json

import requests

from jobs.services.jobs import job_create, result_read_all
from jobs.services.specs import parse_job_request
from jobs.states import TERMINAL_STATES, JobState
from tests.stack import wait_for


def signed_in_session(base_url: str, username: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base_url}/accounts/login/", timeout=30).raise_for_status()
    session.post(
        f"{base_url}/accounts/login/",
        data={"username": username, "password": username, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{base_url}/accounts/login/"},
        timeout=30,
    ).raise_for_status()
    assert "sessionid" in session.cookies
    return session


def run(owner, **request):
    job = job_create(owner=owner, spec=parse_job_request(request))

    def ended():
        job.refresh_from_db()
        return job.state in TERMINAL_STATES

    wait_for(ended, timeout=120, what=f"job {job.uuid} to end")
    assert job.state == JobState.SUCCEEDED, job.last_error
    return job


def test_the_seeds_group_apply_result_is_described_viewed_and_downloaded_with_its_group_labels(live, analyst):
    job = run(
        analyst,
        kind="group_apply",
        script="group_count",
        input="select * from IRIS",
        groupBy="Species",
        orderBy="Sepal_Length",
        parameters={"oml_input_type": "pandas.DataFrame"},
        asyncFlag=True,
    )
    assert (job.result.shape, job.result.row_count) == ("groups", 3)
    groups = json.loads(result_read_all(job.result))["result"]
    session = signed_in_session(live.base_url, "analyst")

    answer = session.get(live.url(f"/jobs/{job.uuid}/result.csv"), timeout=60)
    rows = list(csv.reader(io.StringIO(answer.text, newline="")))
    assert rows[0][0] == "group"
    assert sorted(rows[0][1:]) == ["COUNT", "SEPAL_LENGTH", "SPECIES"]
    assert [row[0] for row in rows[1:]] == list(groups)
    for row in rows[1:]:
        frame = groups[row[0]]
        assert dict(zip(rows[0][1:], row[1:], strict=True)) == {
            name: str(column["0"]) for name, column in frame.items()
        }

    page = session.get(live.url(f"/jobs/{job.uuid}/result/"), timeout=60).text
    for label in groups:
        assert f'<span class="mono group-label">{label}</span>' in page
    assert session.get(live.url(f"/jobs/{job.uuid}/result.json"), timeout=60).content == result_read_all(job.result)


def test_an_engine_drawing_is_shown_as_a_png_beside_its_data(live, analyst):
    job = run(analyst, kind="do_eval", script="RandomRedDots", graphicsFlag=True, asyncFlag=True)
    assert job.result.shape == "graphics"
    session = signed_in_session(live.base_url, "analyst")
    page = session.get(live.url(f"/jobs/{job.uuid}/result/"), timeout=60).text
    assert page.count('<img src="data:image/png;base64,') == job.result.row_count >= 1
    assert '<span class="tree-key">val</span>' in page
