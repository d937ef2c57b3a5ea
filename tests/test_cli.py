"""The `omlpy` command line, run as the real executable in a subprocess with a home folder of its own, against
the running system (web server, worker, engine): each command, each exit code, errors as one line."""

from __future__ import annotations

import csv
import io
import json
import stat
import subprocess
import time
import uuid

import pyarrow.parquet as pq
import pytest
import requests

from accounts.models import ApiToken, Membership, Team
from accounts.tokens import token_create, token_revoke
from jobs.models import IdempotencyKey, Job
from tests.cli_support import OMLPY, Omlpy, StandIn, assert_refused, forward
from tests.stack import free_port, wait_for

# The README's worked example: the seed's group-apply call from the terminal, waited on.
SEED_CALL = [
    "submit", "group_apply", "group_count", "--input", "select * from IRIS", "--group-by", "Species",
    "--order-by", "Sepal_Length", "--param", "oml_input_type=pandas.DataFrame", "--parallel-flag",
    "--wait", "--quiet",
]  # fmt: skip


@pytest.fixture
def omlpy(live, analyst, tmp_path) -> Omlpy:
    _, secret = token_create(user=analyst, name="cli")
    home = tmp_path / "home"
    home.mkdir()
    return Omlpy(home=home, url=live.base_url, token=secret)


def _json(done) -> dict | list:
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    return json.loads(done.stdout)


def _submit(omlpy: Omlpy, *args: str) -> str:
    done = omlpy("submit", *args, "--quiet")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# --- Signing in ----------------------------------------------------------------------------------------


def test_login_checks_the_token_keeps_it_readable_by_the_user_only_and_logout_forgets_it(omlpy):
    done = omlpy("login", omlpy.url + "/", "--token", omlpy.token, signed_in=False)
    assert done.returncode == 0, done.stderr
    assert "as analyst" in done.stdout
    stored = omlpy.home / ".config" / "omlpy" / "config.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    assert json.loads(stored.read_text()) == {"url": omlpy.url, "token": omlpy.token}
    me = _json(omlpy("whoami", "--output", "json", signed_in=False))
    assert (me["username"], me["url"], me["token"]["name"]) == ("analyst", omlpy.url, "cli")
    assert "analyst" in omlpy("whoami", signed_in=False).stdout
    assert omlpy("logout", signed_in=False).returncode == 0
    assert not stored.exists()
    assert_refused(omlpy("whoami", signed_in=False), 3, "not signed in", "omlpy login")


def test_login_asks_for_the_token_when_none_is_given(omlpy):
    done = omlpy("login", omlpy.url, signed_in=False, input=omlpy.token + "\n")
    assert done.returncode == 0, done.stderr
    assert _json(omlpy("whoami", "--output", "json", signed_in=False))["username"] == "analyst"


def test_login_with_a_token_the_server_refuses_stores_nothing(omlpy):
    assert_refused(omlpy("login", omlpy.url, "--token", "omlpy_wrong", signed_in=False), 3, "refused", "account/tokens")
    assert not (omlpy.home / ".config" / "omlpy").exists()


def test_the_environment_overrides_the_stored_sign_in(omlpy, make_user):
    assert omlpy("login", omlpy.url, "--token", omlpy.token, signed_in=False).returncode == 0
    _, other = token_create(user=make_user("colleague"), name="theirs")
    me = _json(omlpy("whoami", "--output", "json", signed_in=False, env={"OMLPY_TOKEN": other}))
    assert me["username"] == "colleague"


def test_a_revoked_token_exits_3_naming_omlpy_login(omlpy):
    token_revoke(token=ApiToken.objects.get(name="cli"))
    assert_refused(omlpy("ls"), 3, "refused the token", f"omlpy login {omlpy.url}")


def test_a_read_only_role_is_refused_with_exit_3(omlpy, make_user):
    auditor = make_user("reviewer")
    Membership.objects.create(user=auditor, team=Team.objects.create(name="Risk"), role=Membership.Role.AUDITOR)
    _, secret = token_create(user=auditor, name="audit")
    done = omlpy("submit", "do_eval", "return_df", env={"OMLPY_TOKEN": secret})
    assert_refused(done, 3, "read-only", "omlpy login")
    assert Job.objects.count() == 0


# --- What there is ----------------------------------------------------------------------------------------


def test_connections_and_scripts_are_listed_as_tables_and_as_json(omlpy):
    connections = _json(omlpy("connections", "--output", "json"))
    assert [(c["name"], c["is_default"]) for c in connections] == [("Embedded engine", True)]
    assert "Embedded engine" in omlpy("connections").stdout
    scripts = _json(omlpy("scripts", "--output", "json"))
    assert {"group_count", "return_df", "timer"} <= {s["name"] for s in scripts}
    listed = omlpy("scripts", "--connection", "Embedded engine")
    assert listed.returncode == 0
    assert "group_count" in listed.stdout
    assert_refused(omlpy("scripts", "--connection", "Nowhere"), 2, "Nowhere")


# --- Submitting and following ------------------------------------------------------------------------------


def test_the_seed_group_apply_call_waited_on_succeeds_and_its_result_is_saved_as_csv(omlpy, tmp_path):
    done = omlpy(*SEED_CALL)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    job = Job.objects.get(uuid=job_id)
    assert job.state == "succeeded"
    assert job.oml_body()["parameters"] == '{"oml_input_type":"pandas.DataFrame"}'
    assert (job.group_by, job.order_by, job.parallel_flag) == ("Species", "Sepal_Length", True)
    saved = omlpy("result", job_id, "--format", "csv", "-o", str(tmp_path / "iris-groups.csv"))
    assert saved.returncode == 0, saved.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "iris-groups.csv").read_text())))
    assert {row["SPECIES"]: row["COUNT"] for row in rows} == {"setosa": "50", "versicolor": "50", "virginica": "50"}


def test_param_values_are_sent_as_json_when_they_read_as_json_and_as_text_otherwise(omlpy):
    job_id = _submit(
        omlpy, "do_eval", "return_df", "--parameters", '{"num": 2, "scale": 1}', "--param", "scale=4",
        "--param", "note=abc", "--param", "flag=true", "--param", 'quoted="5"',
    )  # fmt: skip
    assert Job.objects.get(uuid=job_id).parameters == {"num": 2, "scale": 4, "note": "abc", "flag": True, "quoted": "5"}


def test_submit_from_a_file_with_options_given_beside_it_winning(omlpy, tmp_path):
    request = {"kind": "index_apply", "script": "compute_random_mean", "times": 3, "parameters": {"a": 1}}
    (tmp_path / "job.json").write_text(json.dumps(request))
    created = _json(
        omlpy("submit", "--file", str(tmp_path / "job.json"), "--times", "2", "--param", "b=2", "--output", "json")
    )
    job = Job.objects.get(uuid=created["id"])
    assert (job.kind, job.script_name, job.times, job.parameters) == (
        "index_apply",
        "compute_random_mean",
        2,
        {"a": 1, "b": 2},
    )


def test_an_invalid_request_exits_2_with_the_servers_words_and_creates_nothing(omlpy):
    assert_refused(omlpy("submit", "group_apply", "group_count", "--input", "select * from IRIS"), 2, "groupBy")
    assert_refused(omlpy("submit", "group_apply", "group_count", "--param", "oops"), 2, "--param", "key=value")
    assert_refused(omlpy("show", "not-a-job"), 2, "not a job id")
    assert_refused(omlpy("show", str(uuid.uuid4())), 2, "Not found")
    assert_refused(omlpy("ls", "--since", "last tuesday"), 2, "--since")
    assert_refused(omlpy("sumbit"), 2, "No such command")
    assert Job.objects.count() == 0


def test_a_submission_retried_after_a_timeout_runs_the_job_once(omlpy):
    """The stand-in forwards every request to the real server but holds the first answer to a submission past
    the client's read timeout: an HTTP-boundary stand-in for a network that loses an answer, which the real
    stack cannot produce on demand."""
    held: list[bool] = []

    def answer(handler, body):
        status, headers, content = forward(omlpy.url, handler, body)
        if handler.command == "POST" and not held:
            held.append(True)
            time.sleep(2)  # the client has given up on this answer by now (OMLPY_TIMEOUT=1)
        return status, headers, content

    with StandIn(answer).running() as proxy:
        done = omlpy("submit", "do_eval", "return_df", "--param", "num=1", "--param", "scale=1", "--quiet",
                     env={"OMLPY_URL": proxy.url, "OMLPY_TIMEOUT": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    posts = [r for r in proxy.requests if r.method == "POST"]
    assert len(posts) >= 2  # the one held, and the retry (more if the server was slow to answer it too)
    assert len({post.headers["Idempotency-Key"] for post in posts}) == 1
    assert [str(job.uuid) for job in Job.objects.all()] == [done.stdout.strip()]
    assert IdempotencyKey.objects.get().key == posts[0].headers["Idempotency-Key"]


def test_a_failing_job_waited_on_exits_1_and_so_does_asking_for_its_result(omlpy):
    done = omlpy("submit", "do_eval", "fail_always", "--wait")
    assert done.returncode == 1, done.stderr
    assert "failed" in done.stderr
    job_id = Job.objects.get().uuid
    assert_refused(omlpy("result", str(job_id)), 1, "failed", "no result")


def test_watch_follows_a_job_to_its_end_and_exits_5_when_out_of_time(omlpy):
    quick = _submit(omlpy, "do_eval", "timer", "--param", "seconds=1")
    watched = omlpy("watch", quick)
    assert watched.returncode == 0, watched.stderr
    assert "succeeded" in watched.stdout
    slow = _submit(omlpy, "do_eval", "timer", "--param", "seconds=600")
    assert_refused(omlpy("watch", slow, "--timeout", "1"), 5, "still", f"omlpy watch {slow}")
    waited = omlpy(
        "submit", "do_eval", "timer", "--param", "seconds=600", "--wait", "--timeout", "0.5", "--output", "json"
    )
    assert waited.returncode == 5
    assert json.loads(waited.stdout)["state"] != "succeeded"


def test_cancel_stops_a_job_and_a_second_cancel_exits_1_naming_its_state(omlpy):
    job_id = _submit(omlpy, "do_eval", "timer", "--param", "seconds=600")
    wait_for(lambda: Job.objects.get(uuid=job_id).state == "pending", what="the job to be pending")
    cancelled = omlpy("cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    ended = omlpy("watch", job_id)
    assert ended.returncode == 1
    assert "cancelled" in ended.stderr
    assert_refused(omlpy("cancel", job_id), 1, "already ended (cancelled)")


def test_rerun_and_clone_make_new_jobs_linked_to_the_original(omlpy):
    original = _submit(omlpy, "do_eval", "return_df", "--param", "num=2", "--param", "scale=1", "--wait")
    rerun = _json(omlpy("rerun", original, "--wait", "--output", "json"))
    assert (rerun["parent"], rerun["state"]) == (original, "succeeded")
    clone = _json(omlpy("clone", original, "--param", "scale=4", "--wait", "--output", "json"))
    assert (clone["parent"], clone["state"]) == (original, "succeeded")
    assert Job.objects.get(uuid=clone["id"]).parameters == {"num": 2, "scale": 4}


# --- Reading -------------------------------------------------------------------------------------------


def test_ls_filters_like_the_history_page_and_show_lists_the_transitions(omlpy):
    done = _submit(omlpy, "index_apply", "compute_random_mean", "--times", "2", "--wait")
    running = _submit(omlpy, "do_eval", "timer", "--param", "seconds=600")
    listed = _json(omlpy("ls", "--output", "json"))
    assert [job["id"] for job in listed] == [running, done]
    assert [job["id"] for job in _json(omlpy("ls", "--kind", "index_apply", "--output", "json"))] == [done]
    assert [job["id"] for job in _json(omlpy("ls", "--state", "succeeded", "--output", "json"))] == [done]
    assert [job["id"] for job in _json(omlpy("ls", "--script", "timer", "--output", "json"))] == [running]
    assert len(_json(omlpy("ls", "--owner", "analyst", "--output", "json"))) == 2
    assert _json(omlpy("ls", "--owner", "somebody-else", "--output", "json")) == []
    assert _json(omlpy("ls", "--until", "2h", "--output", "json")) == []
    assert [job["id"] for job in _json(omlpy("ls", "--since", "1h", "--limit", "1", "--output", "json"))] == [running]
    table = omlpy("ls")
    assert done in table.stdout
    assert running in table.stdout
    shown = omlpy("show", done)
    assert shown.returncode == 0
    for text in ("compute_random_mean", "succeeded", "Transitions", "pending", "fetching"):
        assert text in shown.stdout
    assert [t["to_state"] for t in _json(omlpy("show", done, "--output", "json"))["transitions"]][-1] == "succeeded"


def test_compare_shows_the_differing_parameters_and_results(omlpy):
    a = _submit(omlpy, "do_eval", "return_df", "--param", "num=2", "--param", "scale=1", "--wait")
    b = _submit(omlpy, "do_eval", "return_df", "--param", "num=2", "--param", "scale=2", "--wait")
    shown = omlpy("compare", a, b)
    assert shown.returncode == 0, shown.stderr
    assert "parameters.scale" in shown.stdout
    assert "differing cells" in shown.stdout
    report = _json(omlpy("compare", a, b, "--output", "json"))
    assert [row["field"] for row in report["request"] if row["differs"]] == ["parameters.scale"]
    assert report["result"]["differing_cells"] == 1  # RES of the second row: 1.0 against 0.5


WIDE_ROWS = '''import pandas as pd


def wide_rows(n, width):
    """n rows of `width` characters each: a result of several megabytes."""
    return pd.DataFrame({"ID": range(int(n)), "TEXT": [f"{i:06d}" + "x" * int(width) for i in range(int(n))]})
'''


def test_a_result_of_several_megabytes_streams_to_files_and_stdout_byte_for_byte_as_the_api_sends_it(omlpy, tmp_path):
    from omlengine.services import script_save

    script_save(name="wide_rows", owner="OMLUSER", source=WIDE_ROWS, description="", is_global=True)
    job_id = _submit(omlpy, "do_eval", "wide_rows", "--param", "n=4000", "--param", "width=1000", "--wait")
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {omlpy.token}"
    for fmt in ("json", "csv", "parquet", "xlsx"):
        target = tmp_path / f"result.{fmt}"
        saved = omlpy("result", job_id, "-o", str(target))  # the format from the file's suffix
        assert saved.returncode == 0, saved.stderr
        expected = api.get(f"{omlpy.url}/api/v1/jobs/{job_id}/result.{fmt}", timeout=120).content
        if fmt in ("json", "csv"):
            assert len(expected) > 4_000_000
        assert target.read_bytes() == expected, fmt
    streamed = omlpy.raw("result", job_id, "--format", "csv")
    assert streamed.returncode == 0
    assert streamed.stdout == (tmp_path / "result.csv").read_bytes()
    assert pq.read_table(tmp_path / "result.parquet").num_rows == 4000
    assert not list(tmp_path.glob("*.part"))


# --- When the server cannot help ---------------------------------------------------------------------------


def test_a_server_that_is_down_exits_4(omlpy):
    nowhere = f"http://127.0.0.1:{free_port()}"
    assert_refused(omlpy("ls", env={"OMLPY_URL": nowhere}), 4, "cannot reach", "connection refused")


def test_503_is_retried_after_the_time_retry_after_names_and_a_server_that_stays_overloaded_exits_4(omlpy):
    """The stand-in answers as an overloaded server would (503 with Retry-After), which the real stack does only
    while its database is down: an HTTP-boundary stand-in for that overload."""
    me = json.dumps({"username": "analyst", "full_name": "", "email": "", "is_admin": False, "can_submit": True,
                     "teams": [], "token": None}).encode()  # fmt: skip
    busy = {"Content-Type": "application/json", "Retry-After": "1"}

    def once_busy(handler, body):
        if len(overloaded.requests) == 1:
            return 503, busy, b'{"detail": "Busy, try again shortly."}'
        return 200, {"Content-Type": "application/json"}, me

    overloaded = StandIn(once_busy)
    with overloaded.running():
        done = omlpy("whoami", "--output", "json", env={"OMLPY_URL": overloaded.url})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["username"] == "analyst"
    first, second = overloaded.requests
    assert second.at - first.at >= 1.0  # it waited as Retry-After asked

    always = StandIn(lambda handler, body: (503, {**busy, "Retry-After": "0"}, b'{"detail": "Busy."}'))
    with always.running():
        done = omlpy("whoami", env={"OMLPY_URL": always.url, "OMLPY_RETRIES": "2"})
    assert_refused(done, 4, "503", "Busy.")
    assert len(always.requests) == 3


def test_shell_completion_completes_commands_and_choices(omlpy):
    def complete(words: str) -> list[str]:
        env = {"_OMLPY_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)}
        done = omlpy(signed_in=False, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("omlpy su") == ["submit"]
    assert complete(f"omlpy result {uuid.uuid4()} --format p") == ["parquet"]
    assert complete("omlpy ls --output ") == ["text", "json"]
    # The shell named, as an install script does: detecting it depends on how the test run itself was started.
    script = subprocess.run(
        [OMLPY, "--show-completion", "bash"], capture_output=True, text=True, env=omlpy.env(), timeout=60
    )
    assert script.returncode == 0, script.stderr
    assert "_OMLPY_COMPLETE=complete_bash" in script.stdout
