"""Reading OML's scripts: the worker's reads just before a POST and at a finish (shared by the jobs that ask
together, never older than the ask), the pickers' one cached selector, and the OML protocol kept in jobs.oml."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.core.cache import cache

from jobs.models import Connection, Job
from jobs.oml.client import (
    ERROR_BODY_LIMIT,
    ConnectionInfo,
    OMLClient,
    body_error,
    client_for,
    run_url,
)
from jobs.oml.errors import OMLError
from jobs.states import JobState
from jobs.worker import lifecycle
from omlengine.services import script_save
from tests.stack import wait_for
from tests.test_lifecycle import submit, wait_terminal

ROOT = Path(__file__).resolve().parent.parent
PROBE = 'def list_probe():\n    return {{"version": {n}}}\n'


def info(base_url: str, **timeouts) -> ConnectionInfo:
    values = {"connect_timeout": 2.0, "read_timeout": 10.0, "get_retries": 0} | timeouts
    return ConnectionInfo(
        key=f"test:{base_url}", base_url=base_url, api_version="v2", username="U", password="p", **values
    )


# --- Reads that jobs share ---------------------------------------------------------------------------


class ScriptListServer:
    """An OML stand-in on loopback that holds its first script list answer until released.

    The embedded engine answers a list at once; a list read still in flight while other jobs ask is a case it
    cannot produce on demand, so this test server (real HTTP, at the client's boundary) produces it. Each
    answer dates the script with the number of the read, so a caller can tell which read it was given."""

    def __init__(self):
        self.reads = 0
        self.release = threading.Event()
        self.first_arrived = threading.Event()
        self.lock = threading.Lock()
        self.fail_with: int | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._json(200, {"accessToken": "t", "expiresIn": 3600, "tokenType": "Bearer"})

            def do_GET(self):
                with server.lock:
                    server.reads += 1
                    number = server.reads
                if number == 1:
                    server.first_arrived.set()
                    server.release.wait(timeout=30)
                if server.fail_with:
                    self._json(server.fail_with, {"errorCode": 1, "errorMessage": "the list is not available"})
                    return
                listed = {"name": "list_probe", "owner": "U", "date": f"read-{number}", "script": "def f(): pass"}
                self._json(200, {"result": [listed]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def list_server():
    server = ScriptListServer()
    yield server
    server.close()


def read_in_threads(client: OMLClient, numbers: range, answers: dict, errors: dict) -> list[threading.Thread]:
    def read(n: int) -> None:
        try:
            answers[n] = client.listed_script("list_probe")["date"]
        except OMLError as exc:
            errors[n] = exc

    threads = [threading.Thread(target=read, args=(n,)) for n in numbers]
    for thread in threads:
        thread.start()
    return threads


def test_reads_asked_for_while_one_is_in_flight_share_one_read_sent_after_they_asked(list_server):
    client = OMLClient(info(list_server.base_url), cache)
    answers: dict = {}
    errors: dict = {}
    first = read_in_threads(client, range(1), answers, errors)
    assert list_server.first_arrived.wait(timeout=10)
    # Three more jobs ask while the first read is at the server: that read was sent before they asked.
    others = read_in_threads(client, range(1, 4), answers, errors)
    wait_for(
        lambda: client._list_waiting is not None and client._list_waiting.members == 3,
        timeout=10,
        what="the three reads to wait together",
    )
    list_server.release.set()
    for thread in first + others:
        thread.join(timeout=10)
    assert not errors
    # The first caller has the first read; the three others one read between them, sent after they asked.
    assert answers == {0: "read-1", 1: "read-2", 2: "read-2", 3: "read-2"}
    assert list_server.reads == 2
    # Asked alone afterwards: a read of its own, never an earlier answer.
    assert client.listed_script("list_probe")["date"] == "read-3"


def test_a_failed_read_fails_each_call_that_shared_it_and_the_next_call_asks_again(list_server):
    client = OMLClient(info(list_server.base_url), cache)
    list_server.fail_with = 500
    answers: dict = {}
    errors: dict = {}
    threads = read_in_threads(client, range(1), answers, errors)
    assert list_server.first_arrived.wait(timeout=10)
    threads += read_in_threads(client, range(1, 3), answers, errors)
    wait_for(
        lambda: client._list_waiting is not None and client._list_waiting.members == 2,
        timeout=10,
        what="the two reads to wait together",
    )
    list_server.release.set()
    for thread in threads:
        thread.join(timeout=10)
    assert answers == {}
    assert sorted(errors) == [0, 1, 2]
    assert all("the list is not available" in str(exc) for exc in errors.values())
    assert list_server.reads == 2
    list_server.fail_with = None
    assert client.listed_script("list_probe")["date"] == "read-3"


# --- The finish check reads the date ---------------------------------------------------------------


def test_the_finish_check_compares_the_listed_date_and_nothing_else(live):
    script_save(name="list_probe", owner="OMLUSER", source=PROBE.format(n=1), is_global=True)
    connection = Connection.objects.get(is_default=True)
    client = client_for(connection.oml_connection())
    listed = client.listed_script("list_probe")
    job = Job(connection=connection, script_name="list_probe", script_date=listed["date"], script_sha256="0" * 64)
    # The sha256 the job recorded is not the listed body's: the date alone says whether the script changed.
    assert lifecycle._script_check(job, client) == {"script_date_at_finish": listed["date"], "script_changed": False}

    script_save(name="list_probe", owner="OMLUSER", source=PROBE.format(n=2), is_global=True)
    check = lifecycle._script_check(job, client)
    assert check["script_changed"] is True
    assert check["script_date_at_finish"] > listed["date"]


def test_a_job_snapshots_the_callers_own_script_before_a_global_one_of_the_same_name(live):
    script_save(name="list_probe", owner="SOMEONE", source=PROBE.format(n=1), is_global=True)
    script_save(name="list_probe", owner="OMLUSER", source=PROBE.format(n=2), is_global=False)
    connection = Connection.objects.get(is_default=True)
    listed = client_for(connection.oml_connection()).listed_script("list_probe")
    assert (listed["owner"], listed["script"]) == ("OMLUSER", PROBE.format(n=2))
    owned = client_for(connection.oml_connection()).listed_script("list_probe", "SOMEONE")
    assert owned["script"] == PROBE.format(n=1)


# --- The pickers' one cached selector --------------------------------------------------------------


def picked_names(client, connection) -> tuple[set, set]:
    page = client.get("/jobs/new/scripts/", {"connection": connection.pk}).content.decode()
    api = client.get(f"/api/v1/connections/{connection.pk}/scripts").json()
    return set(re.findall(r'value="([A-Za-z_]+)"', page)), {s["name"] for s in api}


def test_the_pickers_share_one_cached_list_and_a_job_never_reads_it(live, analyst, client, settings):
    settings.SCRIPT_LIST_CACHE_SECONDS = 300
    cache.clear()
    connection = Connection.objects.get(is_default=True)
    client.force_login(analyst)
    script_save(name="list_probe", owner="OMLUSER", source=PROBE.format(n=1), is_global=True)
    page, api = picked_names(client, connection)
    assert "list_probe" in page
    assert "list_probe" in api

    # A script added now is not in the pickers while their list is kept...
    script_save(name="list_probe_two", owner="OMLUSER", source=PROBE.format(n=1), is_global=True)
    page, api = picked_names(client, connection)
    assert "list_probe_two" not in page
    assert "list_probe_two" not in api
    # ...but a job reads OML's list itself: it runs, and records, the body OML lists now.
    script_save(name="list_probe", owner="OMLUSER", source=PROBE.format(n=2), is_global=True)
    job = wait_terminal(submit(analyst, kind="do_eval", script="list_probe"))
    assert job.state == JobState.SUCCEEDED
    assert job.script_source == PROBE.format(n=2)

    # Without a lifetime the pickers ask OML every time.
    settings.SCRIPT_LIST_CACHE_SECONDS = 0
    page, api = picked_names(client, connection)
    assert "list_probe_two" in page
    assert "list_probe_two" in api


def test_a_failed_list_is_not_kept_for_the_pickers(live, analyst, client, settings):
    settings.SCRIPT_LIST_CACHE_SECONDS = 300
    cache.clear()
    client.force_login(analyst)
    connection = Connection.objects.get(is_default=True)
    good_url = connection.base_url
    Connection.objects.filter(pk=connection.pk).update(base_url="http://127.0.0.1:9")
    connection.refresh_from_db()
    assert client.get(f"/api/v1/connections/{connection.pk}/scripts").status_code == 502
    page = client.get("/jobs/new/scripts/", {"connection": connection.pk}).content.decode()
    assert "Type the script&#x27;s name instead." in page
    Connection.objects.filter(pk=connection.pk).update(base_url=good_url)
    answer = client.get(f"/api/v1/connections/{connection.pk}/scripts")
    assert answer.status_code == 200
    assert "group_count" in {s["name"] for s in answer.json()}


# --- The OML protocol lives in jobs.oml ----------------------------------------------------------


def test_error_bodies_are_told_apart_from_results():
    assert body_error(b'{"errorCode": 1024, "errorMessage": "Output exceeds maximum length 5000"}') == (
        "Output exceeds maximum length 5000"
    )
    assert body_error(b'{"result": {"errorMessage": "a column of the result"}}') is None
    assert body_error(b'{"errorMessage": "x", "result": []}') is None
    assert body_error(b"errorMessage, but not JSON") is None
    assert body_error(b"") is None
    big = json.dumps({"errorMessage": "x", "pad": "y" * ERROR_BODY_LIMIT}).encode()
    assert body_error(big) is None


def test_a_call_s_url_is_built_in_one_place():
    assert run_url("https://h.example.com/", "v2", "group-apply", "my script", "OML USER") == (
        "https://h.example.com/oml/api/py-scripts/v2/group-apply/my%20script/OML%20USER"
    )
    assert run_url("http://127.0.0.1:8000", "v1", "do-eval", "a/b") == (
        "http://127.0.0.1:8000/oml/api/py-scripts/v1/do-eval/a%2Fb"
    )


def test_only_jobs_oml_knows_oml_s_paths_and_error_key():
    """The URL scheme and the errorMessage check are written once, in jobs/oml/."""
    outside = [path for path in (ROOT / "jobs").rglob("*.py") if "oml" not in path.relative_to(ROOT / "jobs").parts]
    assert outside
    for path in outside:
        text = path.read_text()
        assert "errorMessage" not in text, path
        assert "py-scripts" not in text, path


def test_the_oml_client_imports_nothing_of_the_database_layer():
    code = (
        "import sys, jobs.oml.client, jobs.oml.errors; "
        "print(sorted(m for m in sys.modules if m.startswith('django.db') "
        "or (m.startswith('jobs.') and not m.startswith('jobs.oml'))))"
    )
    env = {"DJANGO_SETTINGS_MODULE": "omlpy_dashboard.settings", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.django_db
def test_the_client_is_given_plain_values_with_the_deployment_s_timeouts(settings):
    from jobs.services.jobs import connection_save

    settings.OML_CONNECT_TIMEOUT = 1.5
    settings.OML_READ_TIMEOUT = 7.0
    settings.OML_GET_RETRIES = 1
    connection = connection_save(name="plain", base_url="http://127.0.0.1:9", username="U", password="secret")
    value = connection.oml_connection()
    assert isinstance(value, ConnectionInfo)
    assert (value.base_url, value.api_version, value.username, value.password) == (
        "http://127.0.0.1:9",
        connection.api_version,
        "U",
        "secret",
    )
    assert "secret" not in repr(value)
    client = client_for(value)
    assert client.timeout == (1.5, 7.0)
    assert client_for(connection.oml_connection()) is client
    # Saved with a new password: a new value, a new token key, a new client.
    saved = connection_save(
        connection=connection, name="plain", base_url="http://127.0.0.1:9", username="U", password="other"
    )
    assert saved.oml_connection().password == "other"
    assert saved.oml_connection().key != value.key
    assert client_for(saved.oml_connection()) is not client
