"""The embedded engine over real HTTP: OML's exchanges, shapes, status codes and headers, against the running stack."""

from __future__ import annotations

import base64
import csv
import json
import sqlite3
from pathlib import Path

import psutil
import pytest
import requests
from django.conf import settings
from django.core.management import call_command

from omlengine.models import EngineCall, EngineJob, EngineScript, EngineUser
from tests.stack import wait_for

IRIS_CSV = Path(__file__).resolve().parent.parent / "omlengine" / "data" / "iris.csv"
SEED_BODY = (
    '{"asyncFlag":true,"input":"select * from IRIS","parameter":"{\\"oml_input_type\\":\\"pandas.DataFrame\\"}",'
    '"groupBy":"Species","orderBy":"Sepal_Length","parallelFlag":true}'
)


class EngineClient:
    """Speaks OML's protocol to a base URL the way an OML client does: token, then Bearer calls."""

    def __init__(self, base_url: str, version: str = "v2"):
        self.base_url = base_url
        self.version = version
        self.access_token = ""

    def grant(self, body: dict) -> requests.Response:
        return requests.post(f"{self.base_url}/omlusers/api/oauth2/v1/token", json=body, timeout=30)

    def sign_in(self, username: str = "OMLUSER", password: str = "omluser") -> EngineClient:  # noqa: S107 - demo user
        answer = self.grant({"grant_type": "password", "username": username, "password": password})
        assert answer.status_code == 200, answer.text
        self.access_token = answer.json()["accessToken"]
        return self

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}", "Content-Type": "application/json"}

    def url(self, path: str, version: str | None = None) -> str:
        return f"{self.base_url}/oml/api/py-scripts/{version or self.version}/{path}"

    def call(self, kind: str, script: str, body: dict | str | None = None, version: str | None = None):
        data = body if isinstance(body, str) else json.dumps(body or {})
        return requests.post(self.url(f"{kind}/{script}", version), data=data, headers=self.headers(), timeout=60)

    def get(self, url: str) -> requests.Response:
        return requests.get(url, headers=self.headers(), allow_redirects=False, timeout=60)

    def delete(self, url: str) -> requests.Response:
        return requests.delete(url, headers=self.headers(), timeout=60)

    def submit(self, kind: str, script: str, body: dict | str, version: str | None = None) -> str:
        """POST an async call; answer the job's status URL."""
        answer = self.call(kind, script, body, version)
        assert answer.status_code == 201, answer.text
        assert answer.content == b""
        return answer.headers["Location"]

    def finished(self, job_url: str, timeout: float = 60) -> str:
        """Poll the status URL until 302; answer Content-Location (the result URL)."""
        answer = wait_for(lambda: (a := self.get(job_url)).status_code == 302 and a, timeout=timeout, what="302")
        return answer.headers["Content-Location"]


@pytest.fixture
def engine(live) -> EngineClient:
    return EngineClient(live.base_url).sign_in()


def add_script(tmp_path: Path, name: str, source: str) -> None:
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    call_command("omlengine_script", "add", name, str(path), "--global", "--description", f"test script {name}")


def iris_rows() -> list[dict[str, str]]:
    with IRIS_CSV.open(newline="") as handle:
        return list(csv.DictReader(handle))


def execution_processes(stack, process: str = "engine") -> list[psutil.Process]:
    """The processes the fork server of one of the stack's processes has started: the executions now running.

    The fork server (python -m omlengine.zygote, inside bubblewrap) and the executions it forks share its
    command line; an execution is such a process whose parent is one too.
    """
    found = []
    for candidate in psutil.Process(stack.procs[process].pid).children(recursive=True):
        try:
            argv = candidate.cmdline()
            if "omlengine.zygote" in argv and "bwrap" not in Path(argv[0]).name:
                found.append((candidate, candidate.ppid()))
        except psutil.NoSuchProcess:
            continue
    servers = {candidate.pid for candidate, _ in found}
    return [candidate for candidate, parent in found if parent in servers]


# --- the seed's exchange --------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_seed_exchange_sent_verbatim_goes_201_202_302_and_200_with_iris_groups(engine, version):
    # Two slow LOW jobs fill the LOW service level (2 at once), so the seed's job must wait: 202 is certain.
    sleepers = [engine.submit("do-eval", "sleep_seconds", {"asyncFlag": True, "parameters": '{"seconds": 60}'})]
    sleepers.append(engine.submit("do-eval", "sleep_seconds", {"asyncFlag": True, "parameters": '{"seconds": 60}'}))

    posted = engine.call("group-apply", "group_count", SEED_BODY, version=version)
    assert posted.status_code == 201
    assert posted.content == b""
    job_url = posted.headers["Location"]
    assert job_url.startswith(f"{engine.base_url}/oml/api/py-scripts/{version}/jobs/")

    pending = engine.get(job_url)
    assert pending.status_code == 202
    body = pending.json()
    assert body["status"] == "job is still running"
    assert set(body) == {"createdDate", "status", "elapsedTime"}
    assert len(body["elapsedTime"].split(":")) == 3

    for sleeper in sleepers:
        assert engine.delete(sleeper).json() == {"result": "job deleted successfully"}
    result_url = engine.finished(job_url)
    assert result_url == f"{job_url}/result"
    finished = engine.get(job_url)
    assert finished.content == b""
    assert "Location" not in finished.headers

    answer = engine.get(result_url)
    assert answer.status_code == 200
    groups = answer.json()["result"]
    rows = iris_rows()
    expected = {
        species: {
            "SPECIES": {"0": species},
            "SEPAL_LENGTH": {"0": min(float(r["SEPAL_LENGTH"]) for r in rows if r["SPECIES"] == species)},
            "COUNT": {"0": 50},
        }
        for species in ("setosa", "versicolor", "virginica")
    }
    assert groups == expected


# --- sync shapes ----------------------------------------------------------------------------------
def test_index_apply_of_compute_random_mean_returns_ten_values_the_first_for_seed_one(engine):
    answer = engine.call("index-apply", "compute_random_mean", {"times": 10})
    assert answer.status_code == 200
    values = answer.json()["result"]
    assert len(values) == 10
    assert round(values[0], 10) == 7.2032449344
    assert len(set(values)) == 10


def test_row_apply_over_iris_with_50_rows_calls_three_times_and_returns_one_flat_list(engine, tmp_path):
    add_script(
        tmp_path,
        "chunk_echo",
        "def chunk_echo(dat):\n"
        "    dat['CALL_ROWS'] = len(dat)\n"
        "    dat['FIRST_IN_CALL'] = dat.index == 0\n"
        "    return dat\n",
    )
    answer = engine.call("row-apply", "chunk_echo", {"input": "select * from IRIS", "rows": 50})
    assert answer.status_code == 200
    records = answer.json()["result"]
    assert len(records) == 150
    assert sum(record["FIRST_IN_CALL"] for record in records) == 3
    assert {record["CALL_ROWS"] for record in records} == {50}
    assert [record["SPECIES"] for record in records] == [row["SPECIES"] for row in iris_rows()]


def test_do_eval_of_return_df_answers_the_data_frame_as_row_records(engine):
    answer = engine.call("do-eval", "return_df", {"parameters": '{"num": 3, "scale": 2}'})
    assert answer.status_code == 200
    assert answer.json() == {"result": [{"ID": 0, "RES": 0.0}, {"ID": 1, "RES": 0.5}, {"ID": 2, "RES": 1.0}]}


def test_table_apply_of_my_predict_answers_a_prediction_per_iris_row(engine):
    answer = engine.call("table-apply", "my_predict", {"input": "select * from IRIS"})
    assert answer.status_code == 200
    records = answer.json()["result"]
    assert len(records) == 150
    errors = [abs(r["SEPAL_LENGTH"] - r["PRED_SEPAL_LENGTH"]) for r in records]
    assert sum(errors) / len(errors) < 0.5


@pytest.mark.parametrize(
    ("input_type", "expected"),
    [("pandas.DataFrame", "DataFrame"), ("numpy.recarray", "recarray"), ("default", "ndarray")],
)
def test_oml_input_type_chooses_what_the_function_receives(engine, tmp_path, input_type, expected):
    add_script(tmp_path, "input_kind", "def input_kind(dat):\n    return type(dat).__name__\n")
    body = {
        "input": "select SEPAL_LENGTH, PETAL_LENGTH from IRIS",
        "parameters": json.dumps({"oml_input_type": input_type}),
    }
    assert engine.call("table-apply", "input_kind", body).json() == {"result": expected}


def test_oml_na_omit_drops_rows_with_missing_values_and_other_parameters_become_arguments(engine, tmp_path):
    add_script(tmp_path, "count_rows", "def count_rows(dat, extra=0):\n    return len(dat) + extra\n")
    query = "select SEPAL_LENGTH from IRIS union all select NULL"
    kept = engine.call("table-apply", "count_rows", {"input": query, "parameters": '{"extra": 1000}'})
    omitted = engine.call("table-apply", "count_rows", {"input": query, "parameters": '{"oml_na_omit": true}'})
    assert kept.json() == {"result": 1151}
    assert omitted.json() == {"result": 150}


def test_graphics_flag_answers_a_png_image_its_data_as_json_text_and_an_id(engine):
    answer = engine.call("do-eval", "RandomRedDots", {"graphicsFlag": True})
    assert answer.status_code == 200
    [entry] = answer.json()["result"]
    assert set(entry) == {"IMAGE", "DATA", "ID"}
    assert base64.b64decode(entry["IMAGE"]).startswith(b"\x89PNG\r\n\x1a\n")
    assert json.loads(entry["DATA"])[0] == {"id": 1, "val": 0.01}
    assert entry["ID"] == 1


def test_scripts_lists_the_seeded_scripts_and_envs_lists_none(engine):
    listed = requests.get(engine.url("scripts"), headers=engine.headers(), timeout=30).json()["result"]
    by_name = {script["name"]: script for script in listed}
    assert {"group_count", "compute_random_mean", "RandomRedDots", "return_df", "timer"} <= set(by_name)
    assert by_name["group_count"]["owner"] == "OMLUSER"
    assert "def group_count(dat)" in by_name["group_count"]["script"]
    envs = requests.get(engine.url("envs"), headers=engine.headers(), timeout=30)
    assert envs.json() == {"result": {"envs": []}}


def test_a_script_named_with_its_owner_runs_and_an_unknown_script_is_a_clear_400(engine):
    owned = requests.post(
        engine.url("do-eval/return_df/OMLUSER"),
        data='{"parameters":"{\\"num\\":1,\\"scale\\":1}"}',
        headers=engine.headers(),
        timeout=30,
    )
    assert owned.json() == {"result": [{"ID": 0, "RES": 0.0}]}
    unknown = engine.call("do-eval", "no_such_script")
    assert unknown.status_code == 400
    assert "no_such_script not found" in unknown.json()["errorMessage"]


# --- errors ---------------------------------------------------------------------------------------
def test_a_script_error_answers_400_sync_and_through_the_result_url_async(engine):
    sync = engine.call("do-eval", "fail_always")
    assert sync.status_code == 400
    assert "ValueError: fail_always always fails" in sync.json()["errorMessage"]

    job_url = engine.submit("do-eval", "fail_always", {"asyncFlag": True})
    result = engine.get(engine.finished(job_url))
    assert result.status_code == 400
    assert "ValueError: fail_always always fails" in result.json()["errorMessage"]


@pytest.mark.parametrize(
    "statement",
    ["delete from IRIS", "with x as (select 1) delete from IRIS", "select 1; delete from IRIS", "drop table IRIS"],
)
def test_a_statement_that_writes_is_refused_and_iris_keeps_its_150_rows(engine, statement):
    answer = engine.call("table-apply", "my_predict", {"input": statement})
    assert answer.status_code == 400
    assert answer.json()["errorMessage"]
    with sqlite3.connect(settings.OMLENGINE_DATA_DB) as data:
        assert data.execute("select count(*) from IRIS").fetchone() == (150,)


def test_output_over_5000_items_answers_error_1024(engine):
    over = engine.call("do-eval", "big_output", {"parameters": '{"n": 5001}'})
    assert over.status_code == 400
    assert over.json() == {"errorCode": 1024, "errorMessage": "Output exceeds maximum length 5000"}
    assert len(engine.call("do-eval", "big_output", {"parameters": '{"n": 5000}'}).json()["result"]) == 5000


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"asyncFlag": True, "timeout": 60}, "timeout"),
        ({"asyncFlag": True, "timeout": 50000}, "timeout"),
        ({"parameters": "not json"}, "not valid JSON"),
        ({"parameters": "[1, 2]"}, "JSON object"),
        ({"parameters": {"num": 1}}, "string holding a JSON object"),
    ],
)
def test_invalid_requests_answer_400_naming_the_problem_and_create_no_job(engine, body, complaint):
    answer = engine.call("do-eval", "return_df", body)
    assert answer.status_code == 400
    assert complaint in answer.json()["errorMessage"]
    assert not EngineJob.objects.exists()
    assert not EngineCall.objects.exists()


def test_missing_or_bad_token_answers_401(engine):
    missing = requests.post(engine.url("do-eval/return_df"), json={}, timeout=30)
    forged = requests.post(
        engine.url("do-eval/return_df"), json={}, headers={"Authorization": "Bearer abc.def.ghi"}, timeout=30
    )
    wrong_password = engine.grant({"grant_type": "password", "username": "OMLUSER", "password": "nope"})
    assert [missing.status_code, forged.status_code, wrong_password.status_code] == [401, 401, 401]
    assert all("errorMessage" in answer.json() for answer in (missing, forged, wrong_password))


@pytest.mark.parametrize("field", ["refresh_token", "token"])
def test_refresh_grant_answers_a_new_working_token_for_both_body_variants(engine, field):
    refreshed = engine.grant({"grant_type": "refresh_token", field: engine.access_token})
    assert refreshed.status_code == 200
    body = refreshed.json()
    assert body["tokenType"] == "Bearer"
    assert body["expiresIn"] == settings.OMLENGINE_TOKEN_LIFETIME
    assert body["accessToken"] != engine.access_token
    engine.access_token = body["accessToken"]
    assert engine.call("do-eval", "return_df", {"parameters": '{"num": 1, "scale": 1}'}).status_code == 200


def test_an_unknown_job_answers_500_job_not_found(engine):
    answer = engine.get(engine.url("jobs/7e57e57e-0000-4000-8000-000000000000"))
    assert answer.status_code == 500
    assert "job not found" in answer.json()["errorMessage"]


# --- async jobs -----------------------------------------------------------------------------------
def test_delete_stops_a_running_async_job_and_kills_its_process(engine, live):
    # Executions of earlier tests may still be ending: follow only the process this job starts.
    earlier = {process.pid for process in execution_processes(live)}
    job_url = engine.submit("do-eval", "sleep_seconds", {"asyncFlag": True, "parameters": '{"seconds": 120}'})
    job = EngineJob.objects.get()
    wait_for(lambda: EngineJob.objects.filter(pk=job.pk, state="running").exists(), timeout=30, what="the job to run")

    def own_processes():
        return {process.pid for process in execution_processes(live)} - earlier

    started = wait_for(own_processes, timeout=30, what="the job's process to start")

    deleted = engine.delete(job_url)
    assert deleted.status_code == 200
    assert deleted.json() == {"result": "job deleted successfully"}
    wait_for(lambda: not (own_processes() & started), timeout=30, what="the job's process to be killed")
    assert engine.get(job_url).status_code == 500


def test_result_url_answers_404_until_the_job_finishes(engine):
    job_url = engine.submit("do-eval", "sleep_seconds", {"asyncFlag": True, "parameters": '{"seconds": 2}'})
    assert engine.get(f"{job_url}/result").status_code == 404
    result = engine.get(engine.finished(job_url))
    assert result.json() == {"result": 2}


def test_the_engine_counts_accepted_posts_and_status_requests(engine):
    job_url = engine.submit("do-eval", "return_df", {"asyncFlag": True, "parameters": '{"num": 2, "scale": 1}'})
    engine.call("do-eval", "return_df", {"parameters": '{"num": 2, "scale": 1}'})
    engine.finished(job_url)
    engine.get(job_url)

    job = EngineJob.objects.get()
    assert job.status_requests >= 2
    assert job.finished_at is not None
    assert EngineCall.objects.count() == 2
    assert EngineCall.objects.filter(job=job).count() == 1


def test_a_timer_job_finishes_after_its_duration_with_no_process_and_its_due_time_as_finish(engine, live):
    # Executions of earlier tests' jobs may still be running: only one this job started would count.
    before = {process.pid for process in execution_processes(live)}
    job_url = engine.submit("do-eval", "timer", {"asyncFlag": True, "parameters": '{"seconds": 1.5}'})
    assert engine.get(job_url).status_code == 202
    assert [process for process in execution_processes(live) if process.pid not in before] == []
    result = engine.get(engine.finished(job_url, timeout=10))
    assert result.json() == {"result": {"slept": 1.5}}
    job = EngineJob.objects.get()
    assert job.finished_at == job.due_at
    # The due time is computed just before the row is saved and stamped, so on a busy machine the stamp may
    # trail it by some milliseconds.
    assert (job.due_at - job.created_at).total_seconds() == pytest.approx(1.5, abs=0.1)


def test_a_timer_job_with_jitter_varies_around_its_seconds_and_a_bad_jitter_is_refused(engine, live):
    for _ in range(5):
        engine.submit("do-eval", "timer", {"asyncFlag": True, "parameters": '{"seconds": 100, "jitter": 0.1}'})
    durations = [(job.due_at - job.created_at).total_seconds() for job in EngineJob.objects.all()]
    # Equal arguments, runs that differ: drawn lognormally around 100 s (sigma 0.1: within 7 sigma here).
    assert len({round(seconds, 3) for seconds in durations}) == 5
    assert all(50 < seconds < 200 for seconds in durations)
    refused = engine.call("do-eval", "timer", {"asyncFlag": True, "parameters": '{"seconds": 1, "jitter": 2}'})
    assert refused.status_code == 400
    assert "jitter" in refused.json()["errorMessage"]
    assert EngineJob.objects.count() == 5


# --- seeding --------------------------------------------------------------------------------------
def test_seeding_twice_changes_nothing_and_stores_the_password_hashed(live):
    before = (EngineUser.objects.count(), EngineScript.objects.count())
    call_command("omlengine_seed", verbosity=0)
    assert (EngineUser.objects.count(), EngineScript.objects.count()) == before
    assert EngineUser.objects.get().password != "omluser"
    assert EngineClient(live.base_url).sign_in().access_token
