"""The embedded engine isolates what it runs: no secrets, no network, no environment, no root; the input query
inside the limits; a throttled token endpoint that does not say which users exist; a refusal when isolation
cannot be set up. Real web servers, real sandboxes (the suite runs as root, so the drop to an unprivileged
user is exercised too)."""

from __future__ import annotations

import json
import pwd
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.management import call_command
from requests.adapters import HTTPAdapter

from omlengine import services, throttle
from omlengine.models import EngineJob
from tests.stack import Stack, wait_for
from tests.test_engine_protocol import EngineClient, add_script, execution_processes

SANDBOX = {
    "OMLENGINE_WALL_SECONDS": "1",
    "OMLENGINE_MEMORY_MB": "200",
    "OMLENGINE_TOKEN_THROTTLE_FAILURES": "3",
    "OMLENGINE_TOKEN_THROTTLE_IP_FAILURES": "4",
    "OMLENGINE_TOKEN_THROTTLE_SECONDS": "60",
}
ENDLESS_QUERY = "with recursive r(i) as (select 1 union all select i + 1 from r) select count(*) as N from r"
ROWS, ROW_BYTES = 300_000, 1000
LARGE_QUERY = (  # ROWS rows of ROW_BYTES characters each
    "with recursive r(i) as (select 1 union all select i + 1 from r where i < 300000) "
    "select i, substr(hex(zeroblob(500)), 1, 1000) as PAD from r"
)
MB = 1024 * 1024


def _web_only_stack(name: str, env: dict[str, str]) -> Stack:
    """A web server of its own (sync calls run inside it); no engine worker to claim other tests' jobs."""
    stack = Stack(log_dir=Path(settings.VAR_DIR) / f"test-logs-{name}", env=env)
    stack.start_web()
    return stack


@pytest.fixture(scope="module")
def sandbox_stack(django_db_setup, django_db_blocker):
    stack = _web_only_stack("sandbox", SANDBOX)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def no_bwrap_stack(django_db_setup, django_db_blocker):
    """Isolation cannot be set up: the bubblewrap binary named by the setting does not exist."""
    stack = _web_only_stack("no-bwrap", {"OMLENGINE_BWRAP": "/nonexistent/bwrap"})
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def unsandboxed_stack(django_db_setup, django_db_blocker):
    stack = _web_only_stack("unsandboxed", {"OMLENGINE_BWRAP": "/nonexistent/bwrap", "OMLENGINE_SANDBOX": "off"})
    yield stack
    stack.stop()


@pytest.fixture
def engine(transactional_db, sandbox_stack) -> EngineClient:
    call_command("omlengine_seed", verbosity=0)
    return EngineClient(sandbox_stack.base_url).sign_in()


def _answer(engine: EngineClient, tmp_path: Path, source: str, parameters: dict | None = None):
    """Register `source` (one function, `probe`) and call it synchronously; answer its result."""
    add_script(tmp_path, "probe", source)
    answer = engine.call("do-eval", "probe", {"parameters": json.dumps(parameters or {})})
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


# --- what a script can reach ----------------------------------------------------------------------
READ_FILES = """
def probe(paths):
    found = {}
    for path in paths:
        try:
            with open(path, "rb") as handle:
                handle.read(16)
            found[path] = "read"
        except OSError as exc:
            found[path] = type(exc).__name__
    return found
"""


def test_a_script_cannot_read_the_dashboards_secrets_or_database_but_reads_the_data_database(engine, tmp_path):
    var_dir = Path(settings.VAR_DIR)
    secrets = [var_dir / "dev-secret-key", var_dir / "dev-encryption-seed"]
    made = [path for path in secrets if not path.exists()]
    for path in made:  # what a development start writes there
        path.write_text("a development secret")
        path.chmod(0o600)
    database = settings.DATABASES["default"]
    try:
        assert all(path.read_bytes() for path in secrets)  # there, and readable by the engine itself
        if database["ENGINE"] == "django.db.backends.sqlite3":
            # The database file is only looked at, never opened here: closing a descriptor of it in this process
            # would drop the locks SQLite holds on it for the suite's own connection.
            dashboard_db = Path(database["NAME"])
            assert dashboard_db.stat().st_size > 0
            secrets.append(dashboard_db)
        found = _answer(engine, tmp_path, READ_FILES, {"paths": [*map(str, secrets), settings.OMLENGINE_DATA_DB]})
    finally:
        for path in made:
            path.unlink()
    assert found == {**{str(path): "FileNotFoundError" for path in secrets}, settings.OMLENGINE_DATA_DB: "read"}


CONNECT = """
import socket

def probe(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return "connected"
    except OSError as exc:
        return type(exc).__name__
"""


def test_a_script_cannot_open_a_socket_to_the_engine_it_runs_in(engine, tmp_path, sandbox_stack):
    socket.create_connection(("127.0.0.1", sandbox_stack.port), timeout=5).close()  # listening, seen from here
    assert _answer(engine, tmp_path, CONNECT, {"port": sandbox_stack.port}) == "ConnectionRefusedError"


def test_a_script_sees_an_empty_environment_though_the_engine_holds_the_secrets(engine, tmp_path, sandbox_stack):
    web = psutil.Process(sandbox_stack.procs["web"].pid).environ()
    assert {"SECRET_KEY", "ENCRYPTION_KEYS", "DATABASE_URL"} <= set(web)
    assert _answer(engine, tmp_path, "import os\n\ndef probe():\n    return dict(os.environ)\n") == {}


def test_a_script_runs_as_an_unprivileged_user_when_the_engine_runs_as_root(engine, tmp_path, sandbox_stack):
    engine_uid = psutil.Process(sandbox_stack.procs["web"].pid).uids().real
    source = "import os\n\ndef probe():\n    return [os.getuid(), os.geteuid(), os.getgid(), os.getgroups()]\n"
    identity = _answer(engine, tmp_path, source)
    assert identity[0] != 0
    if engine_uid == 0:  # as here: OMLENGINE_SANDBOX_USER, by default nobody, with no supplementary groups
        nobody = pwd.getpwnam("nobody")
        assert identity == [nobody.pw_uid, nobody.pw_uid, nobody.pw_gid, []]
    else:  # an unprivileged engine keeps its own user, inside a user namespace
        assert identity[:2] == [engine_uid, engine_uid]


# --- the input query inside the limits -------------------------------------------------------------
COUNT_ROWS = "def count_rows(dat):\n    return len(dat)\n"


def test_an_endless_recursive_input_query_is_stopped_by_the_wall_clock_limit(engine, tmp_path, sandbox_stack):
    add_script(tmp_path, "count_rows", COUNT_ROWS)
    with ThreadPoolExecutor(max_workers=1) as pool:
        call = pool.submit(engine.call, "table-apply", "count_rows", {"input": ENDLESS_QUERY})
        running = wait_for(lambda: execution_processes(sandbox_stack, "web"), timeout=10, what="the query's process")
        answer = call.result(timeout=60)
    assert answer.status_code == 500
    assert answer.json() == {"errorCode": 1100, "errorMessage": "The script exceeded its wall-clock limit of 1 s."}
    pids = {process.pid for process in running}
    wait_for(
        lambda: not pids & {process.pid for process in execution_processes(sandbox_stack, "web")},
        timeout=10,
        what="the query's process to be killed",
    )


def _web_memory(stack: Stack) -> int:
    """Resident bytes of the web server's own processes (gunicorn's master and workers, not their sandboxes)."""
    master = psutil.Process(stack.procs["web"].pid)
    workers = [child for child in master.children() if "gunicorn" in " ".join(child.cmdline())]
    return sum(process.memory_info().rss for process in [master, *workers])


def test_a_large_input_query_runs_in_the_limited_process_and_the_web_process_does_not_grow(
    engine, tmp_path, sandbox_stack
):
    add_script(tmp_path, "count_rows", COUNT_ROWS)
    for _ in range(4):  # both workers have started their fork server and imported what a call needs
        assert engine.call("table-apply", "count_rows", {"input": "select * from IRIS"}).json() == {"result": 150}
    before = _web_memory(sandbox_stack)
    answer = engine.call("table-apply", "count_rows", {"input": LARGE_QUERY})
    growth = _web_memory(sandbox_stack) - before
    # Stopped by a limit of the execution's process (its memory or its wall clock), never by the web process.
    assert answer.status_code == 500
    assert answer.json()["errorCode"] == 1100
    assert growth < 50 * MB, f"the web server grew by {growth / MB:.0f} MB for a {ROWS * ROW_BYTES / MB:.0f} MB input"


def test_delete_during_a_long_input_query_kills_its_process(live, tmp_path):
    add_script(tmp_path, "count_rows", COUNT_ROWS)
    engine = EngineClient(live.base_url).sign_in()
    earlier = {process.pid for process in execution_processes(live)}
    job_url = engine.submit("table-apply", "count_rows", {"asyncFlag": True, "input": ENDLESS_QUERY})
    job = EngineJob.objects.get()
    wait_for(lambda: EngineJob.objects.filter(pk=job.pk, state="running").exists(), timeout=30, what="the job to run")

    def own_processes():
        return {process.pid for process in execution_processes(live)} - earlier

    started = wait_for(own_processes, timeout=30, what="the query's process to start")
    assert engine.delete(job_url).json() == {"result": "job deleted successfully"}
    # Its CPU limit (60 s) is far away: only the DELETE ends it this soon.
    wait_for(lambda: not (own_processes() & started), timeout=20, what="the query's process to be killed")
    assert engine.get(job_url).status_code == 500


# --- the token endpoint ---------------------------------------------------------------------------
class _From(HTTPAdapter):
    """Connects from a chosen loopback address, as another client would appear to the engine."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def _grant_from(address: str, base_url: str, username: str, password: str) -> requests.Response:
    with requests.Session() as session:
        session.mount("http://", _From(address))
        body = {"grant_type": "password", "username": username, "password": password}
        return session.post(f"{base_url}/omlusers/api/oauth2/v1/token", json=body, timeout=30)


@pytest.fixture
def forget_failures():
    """Failures and locks live in the shared cache: clear those a test made, whatever it asserted."""
    scopes: list[tuple[str | None, str | None]] = []
    yield scopes.append
    for username, address in scopes:
        throttle.reset(username=username, ip=address)


def test_failed_grants_for_one_user_name_lock_it_with_429_and_retry_after_from_any_address(
    engine, sandbox_stack, forget_failures
):
    first, second = "127.0.0.81", "127.0.0.82"
    for scope in (("OMLUSER", first), (None, second)):
        forget_failures(scope)
    for _ in range(3):
        assert _grant_from(first, sandbox_stack.base_url, "OMLUSER", "wrong").status_code == 401
    locked = _grant_from(first, sandbox_stack.base_url, "OMLUSER", "omluser")
    assert locked.status_code == 429
    assert 1 <= int(locked.headers["Retry-After"]) <= 60
    body = locked.json()
    assert body["errorCode"] == 1429
    assert "Too many failed sign-in attempts" in body["errorMessage"]
    assert _grant_from(second, sandbox_stack.base_url, "OMLUSER", "omluser").status_code == 429


def test_one_address_guessing_many_user_names_is_locked_and_others_are_not(engine, sandbox_stack, forget_failures):
    guesser, bystander = "127.0.0.83", "127.0.0.84"
    names = [f"GHOST{n}" for n in range(4)]
    for scope in [(name, None) for name in names] + [("OMLUSER", guesser), (None, bystander)]:
        forget_failures(scope)
    answers = [_grant_from(guesser, sandbox_stack.base_url, name, "wrong") for name in names]
    assert [answer.status_code for answer in answers] == [401] * 4
    assert _grant_from(guesser, sandbox_stack.base_url, "OMLUSER", "omluser").status_code == 429
    assert _grant_from(bystander, sandbox_stack.base_url, "OMLUSER", "omluser").status_code == 200


class CountingHasher(PBKDF2PasswordHasher):
    """PBKDF2 as Django does it (fewer rounds, for speed), counting the password checks it performs."""

    algorithm = "counting_pbkdf2"
    iterations = 1000
    checks = 0

    def verify(self, password: str, encoded: str) -> bool:
        type(self).checks += 1
        return super().verify(password, encoded)


def test_an_unknown_user_name_costs_the_same_password_check_as_a_wrong_password(
    transactional_db, live_server, settings, forget_failures
):
    settings.PASSWORD_HASHERS = ["tests.test_engine_sandbox.CountingHasher"]
    services.user_ensure(username="KNOWN", password="the-right-one")
    for scope in (("KNOWN", "127.0.0.1"), ("NEVER_SEEN", None)):
        forget_failures(scope)
    url = f"{live_server.url}/omlusers/api/oauth2/v1/token"

    def checks_for(username: str) -> tuple[int, requests.Response]:
        before = CountingHasher.checks
        body = {"grant_type": "password", "username": username, "password": "a-guess"}
        answer = requests.post(url, json=body, timeout=30)
        return CountingHasher.checks - before, answer

    known_checks, known = checks_for("KNOWN")
    unknown_checks, unknown = checks_for("NEVER_SEEN")
    assert (known.status_code, unknown.status_code) == (401, 401)
    assert known.json() == unknown.json()
    assert (known_checks, unknown_checks) == (1, 1)


# --- when isolation cannot be set up ---------------------------------------------------------------
def test_without_bubblewrap_the_engine_refuses_to_run_scripts_and_says_why_at_start(transactional_db, no_bwrap_stack):
    call_command("omlengine_seed", verbosity=0)
    engine = EngineClient(no_bwrap_stack.base_url).sign_in()
    answer = engine.call("do-eval", "return_df", {"parameters": '{"num": 2, "scale": 1}'})
    assert answer.status_code == 500
    body = answer.json()
    assert body["errorCode"] == 1102
    assert "/nonexistent/bwrap" in body["errorMessage"]
    assert "OMLENGINE_SANDBOX=off" in body["errorMessage"]
    assert "scripts cannot be isolated (bubblewrap (/nonexistent/bwrap) is not installed" in no_bwrap_stack.log("web")
    assert not execution_processes(no_bwrap_stack, "web")


def test_with_the_sandbox_off_scripts_run_unisolated_and_the_start_says_so(
    transactional_db, unsandboxed_stack, tmp_path
):
    call_command("omlengine_seed", verbosity=0)
    engine = EngineClient(unsandboxed_stack.base_url).sign_in()
    answer = engine.call("do-eval", "return_df", {"parameters": '{"num": 2, "scale": 1}'})
    assert answer.json() == {"result": [{"ID": 0, "RES": 0.0}, {"ID": 1, "RES": 1.0}]}
    engine_uid = psutil.Process(unsandboxed_stack.procs["web"].pid).uids().real
    assert _answer(engine, tmp_path, "import os\n\ndef probe():\n    return os.getuid()\n") == engine_uid
    assert "OMLENGINE_SANDBOX=off: scripts run without isolation" in unsandboxed_stack.log("web")
