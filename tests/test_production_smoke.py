"""The production path, end to end: the stack of docker-compose.yml with DEBUG off, behind Caddy over https.

Static files are built by the image's own build script; gunicorn, the worker, beat, Caddy and the embedded
engine (a service of its own, reached through a Connection like a real OML) run with the commands compose
gives them, on a PostgreSQL database and Redis databases of this test's own, whatever the suite's mode.
Chromium signs in over https and visits every page the URL resolver can reach.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import requests
from requests.adapters import HTTPAdapter

from tests.production import ProductionStack
from tests.stack import ROOT, wait_for

pytestmark = pytest.mark.browser

ADMIN_USER, ADMIN_PASSWORD = "admin", "Smoke-test-password-7d1f"
JOB_WAIT = 90


class SourceAddressAdapter(HTTPAdapter):
    """Connects from a chosen loopback address, as a client on another host would appear."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def session_from(address: str, verify: str | bool) -> requests.Session:
    session = requests.Session()
    # The environment's CA bundle would otherwise take precedence over `verify`.
    session.trust_env = False
    session.mount("https://", SourceAddressAdapter(address))
    session.mount("http://", SourceAddressAdapter(address))
    session.verify = verify
    return session


def https_session(production: ProductionStack) -> requests.Session:
    """A client that trusts Caddy's local CA, and only it."""
    session = requests.Session()
    session.trust_env = False  # the environment's CA bundle would otherwise take precedence over `verify`
    session.verify = str(production.caddy_root_certificate)
    return session


def sign_in(session: requests.Session, base_url: str, username: str, password: str) -> requests.Response:
    session.get(f"{base_url}/accounts/login/", timeout=20).raise_for_status()
    return session.post(
        f"{base_url}/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{base_url}/accounts/login/"},
        timeout=20,
        allow_redirects=False,
    )


@pytest.fixture(scope="module")
def production(tmp_path_factory) -> Iterator[ProductionStack]:
    if shutil.which("caddy") is None:
        pytest.fail("Caddy is needed for the production smoke test: `make test` installs it (apt-get install caddy)")
    name = f"omlpy_smoke_{uuid.uuid4().hex[:10]}"
    admin_dsn = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    stack = ProductionStack(
        tmp_path_factory.mktemp("production"),
        database_url=f"postgres://postgres@127.0.0.1:5432/{name}",
        redis_db=(14, 15),
    )
    try:
        stack.start()
        # README "Deploy": the first administrator, then the connection to the engine service.
        createsuperuser = stack.env("web") | {
            "DJANGO_SUPERUSER_USERNAME": ADMIN_USER,
            "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD,
            "DJANGO_SUPERUSER_EMAIL": "admin@example.com",
        }
        subprocess.run(
            [sys.executable, "manage.py", "createsuperuser", "--noinput"], cwd=ROOT, env=createsuperuser, check=True
        )
        stack.run_once(
            "web",
            stdin="omluser\n",
            extra=["connection_save", "Embedded engine", stack.engine_url, "OMLUSER", "--default"],
        )
        yield stack
    finally:
        stack.stop()
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def api(production) -> requests.Session:
    token = production.run_once("web", extra=["apitoken", ADMIN_USER]).strip()
    session = https_session(production)
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def wait_until_finished(api: requests.Session, base_url: str, job_uuid: str) -> dict:
    def finished():
        job = api.get(f"{base_url}/api/v1/jobs/{job_uuid}", timeout=20).json()
        return job if job["state"] in ("succeeded", "failed", "timed_out", "cancelled") else None

    return wait_for(finished, timeout=JOB_WAIT, interval=0.5, what=f"job {job_uuid} to finish")


@pytest.fixture(scope="module")
def finished_jobs(production, api) -> list[str]:
    """Two succeeded jobs made through the API over https (the compare page takes two)."""
    made = []
    for times in (3, 4):
        response = api.post(
            f"{production.base_url}/api/v1/jobs",
            json={"kind": "index_apply", "script": "compute_random_mean", "times": times},
            timeout=20,
        )
        assert response.status_code == 201, response.text
        made.append(response.json()["id"])
    for job_uuid in made:
        assert wait_until_finished(api, production.base_url, job_uuid)["state"] == "succeeded"
    return made


def test_django_check_deploy_is_clean_under_the_production_settings(production):
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production.env("web"),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_job_submitted_in_the_browser_over_https_succeeds_and_its_result_downloads(production, browser):
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        _sign_in_page(page, production.base_url)
        page.goto(f"{production.base_url}/jobs/new/")
        # The script list comes from the engine service, through the connection.
        page.wait_for_selector("select#id_script option[value=group_count]", state="attached")
        page.select_option("#id_kind", "group_apply")
        page.select_option("#id_script", "group_count")
        page.fill("#id_input", "select * from IRIS")
        page.fill("#id_groupBy", "Species")
        page.fill("#id_parameters", '{"oml_input_type": "pandas.DataFrame"}')
        page.click("#submit-job")
        page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}/$"))
        page.locator("#job-state", has_text="Succeeded").wait_for(timeout=JOB_WAIT * 1000)
        job_uuid = page.url.rstrip("/").rsplit("/", 1)[-1]
        page.goto(f"{production.base_url}/jobs/{job_uuid}/result/")
        with page.expect_download() as download_info:
            page.click("a[href$='.csv']")
        rows = list(csv.DictReader(io.StringIO(download_info.value.path().read_text())))
        counts = {row["SPECIES"]: row["COUNT"] for row in rows}
        assert counts == {"setosa": "50", "versicolor": "50", "virginica": "50"}
    finally:
        context.close()


def _sign_in_page(page, base_url: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", ADMIN_USER)
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "/accounts/login/" not in page.url


def _page_paths(production: ProductionStack, job_uuids: list[str], ids: dict[str, str]) -> list[str]:
    """Every route production's URL resolver has, as concrete paths: a job's uuid in each job route, every
    alternative of a regex route (each download format, each chart), the admin by its model registry, and of the
    API its docs page."""
    listed = subprocess.run(
        [sys.executable, "-m", "tests.production_routes"],
        cwd=ROOT,
        env=production.env("web") | {"DJANGO_SETTINGS_MODULE": "omlpy_dashboard.settings"},
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(listed.stdout)
    # Pages that need a query to show anything get one.
    queries = {"jobs/compare/": f"?a={job_uuids[0]}&b={job_uuids[1]}"}
    concrete = {"/api/v1/docs", "/admin/"}
    for route in found["routes"]:
        concrete.update("/" + path + queries.get(path, "") for path in _expand(route, job_uuids[0], ids))
    concrete.update(f"/admin/{model}/" for model in found["admin_models"])
    return sorted(concrete)


def _expand(regex: str, job_uuid: str, ids: dict[str, str]) -> list[str]:
    """Concrete paths for a route's regex: named groups filled (`ids` names objects that exist), alternatives each
    taken."""
    group = re.search(r"\(\?P<(?P<name>\w+)>(?P<body>[^()]*)\)", regex)
    if group is None:
        return [regex.replace("\\", "")]
    name, body = group["name"], group["body"]
    if name in ids:
        choices = [ids[name]]
    elif "uuid" in name:
        choices = [job_uuid]
    elif re.fullmatch(r"[\w|-]+", body):
        choices = body.split("|")
    elif body in ("[0-9]+", r"\d+"):
        choices = ["1"]
    else:
        choices = ["x"]
    head, tail = regex[: group.start()], regex[group.end() :]
    return [path for choice in choices for path in _expand(head + choice + tail, job_uuid, ids)]


def test_every_page_answers_over_https_without_an_error_or_a_policy_violation(production, browser, finished_jobs, api):
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    problems: list[str] = []
    page = context.new_page()
    page.on("console", lambda msg: msg.type == "error" and problems.append(f"{page.url}: console: {msg.text}"))
    page.on("pageerror", lambda exc: problems.append(f"{page.url}: {exc}"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"{r.url}: HTTP {r.status}"))
    visited = []
    try:
        _sign_in_page(page, production.base_url)
        cookies = {c["name"]: c["value"] for c in context.cookies()}
        raw = https_session(production)
        raw.cookies.update(cookies)
        # A notification rule of the admin's, so that the rule's own pages have something to show.
        rule = api.post(
            f"{production.base_url}/api/v1/notification-rules",
            json={"events": ["failed"], "channel": "inapp", "scope": "mine"},
            timeout=20,
        )
        assert rule.status_code == 201, rule.text
        for path in _page_paths(production, finished_jobs, {"rule_id": str(rule.json()["id"])}):
            url = production.base_url + path
            probe = raw.get(url, timeout=30, allow_redirects=False, stream=True)
            probe.close()
            if probe.status_code == 405:
                continue  # a POST-only action, not a page
            kind = probe.headers.get("Content-Type", "")
            if "text/html" not in kind:
                assert probe.status_code == 200, f"{path}: HTTP {probe.status_code}"
                continue  # a download or a JSON view: fetched, not rendered
            page.goto(url)
            page.wait_for_load_state("networkidle")
            # A fragment still loading would be aborted by the next visit, which htmx reports as an error.
            page.wait_for_function("!document.querySelector('.htmx-request')")
            visited.append(path)
    finally:
        context.close()
    # A fragment request cut short by the next visit is logged by htmx as an abort, then an "after request":
    # navigation, not an error of the page.
    aborted = {line.split(": console: ")[0] for line in problems if "console: htmx:sendAbort" in line}
    problems = [line for line in problems if not _navigation_abort(line, aborted)]
    assert problems == [], "\n".join(problems)
    # The crawl reached the pages an analyst and an administrator use.
    for expected in ("/jobs/", "/jobs/new/", "/analytics/", "/audit/", "/account/", "/account/tokens/", "/admin/"):
        assert expected in visited, f"{expected} was not visited: {visited}"
    assert f"/jobs/{finished_jobs[0]}/" in visited
    assert f"/jobs/{finished_jobs[0]}/result/" in visited
    assert "/api/v1/docs" in visited


def _navigation_abort(line: str, aborted_pages: set[str]) -> bool:
    page = line.split(": console: ")[0]
    return "console: htmx:sendAbort" in line or (page in aborted_pages and "console: htmx:afterRequest" in line)


def test_the_sign_in_audit_entry_names_the_clients_address_behind_the_proxy(production, api):
    client = session_from("127.0.0.2", verify=str(production.caddy_root_certificate))
    # Whatever the client claims, Caddy sends the address it connected from.
    client.headers["X-Forwarded-For"] = "198.51.100.77"
    assert sign_in(client, production.base_url, ADMIN_USER, ADMIN_PASSWORD).status_code == 302
    export = client.get(f"{production.base_url}/audit/export.csv", timeout=20)
    assert export.status_code == 200
    assert export.headers["Content-Type"].startswith("text/csv")
    sign_ins = [row for row in csv.DictReader(io.StringIO(export.text)) if row["action"] == "login"]
    assert sign_ins, export.text[:500]
    assert "127.0.0.2" in {row["ip"] for row in sign_ins}, sign_ins
    assert "198.51.100.77" not in export.text


def test_forwarded_headers_sent_straight_to_gunicorn_are_ignored(production):
    forger = session_from("127.0.0.3", verify=False)
    forged = {"X-Forwarded-For": "203.0.113.99", "X-Forwarded-Proto": "https", "Host": "localhost"}
    # Not from the proxy, so not https: the site redirects to https rather than believing the header, and a
    # sign-in attempt never reaches the form, so nothing is recorded under the forged address.
    page = forger.get(f"{production.gunicorn_url}/accounts/login/", headers=forged, allow_redirects=False)
    assert page.status_code == 301
    assert page.headers["Location"].startswith("https://localhost/")
    attempt = forger.post(
        f"{production.gunicorn_url}/accounts/login/",
        data={"username": "forger", "password": "wrong"},
        headers=forged,
        allow_redirects=False,
    )
    assert attempt.status_code == 301
    auditor = session_from("127.0.0.1", verify=str(production.caddy_root_certificate))
    assert sign_in(auditor, production.base_url, ADMIN_USER, ADMIN_PASSWORD).status_code == 302
    export = auditor.get(f"{production.base_url}/audit/export.csv", timeout=20).text
    assert export.startswith("id,")
    assert "203.0.113.99" not in export
    assert "forger" not in export


def test_worker_and_beat_probes_pass_while_sweeps_complete_and_healthz_reports_the_age(production, api):
    wait_for(
        lambda: requests.get(f"{production.gunicorn_url}/healthz", timeout=10).json()["sweep_age_seconds"] is not None,
        timeout=30,
        what="a completed sweep",
    )
    for service in ("worker", "beat"):
        probe = production.services[service]["healthcheck"]["test"]
        assert probe[0] == "CMD"
        argv = [sys.executable, *probe[2:]] if probe[1] == "python" else probe[1:]
        done = subprocess.run(argv, cwd=ROOT, env=production.env(service), capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    body = requests.get(f"{production.gunicorn_url}/healthz", timeout=10).json()
    assert body["status"] == "ok"
    assert 0 <= body["sweep_age_seconds"] < 30


def test_the_dashboard_processes_never_needed_pandas_numpy_or_matplotlib(production, finished_jobs):
    attempts = production.blocked_log.read_text().splitlines() if production.blocked_log.exists() else []
    # An optional import inside a library (tried, and done without) is how the image runs too.
    hard = [line for line in attempts if line.split()[2] not in OPTIONAL_IMPORTERS]
    assert hard == [], "\n".join(hard)
    for service in ("web", "worker", "beat"):
        assert "ModuleNotFoundError" not in production.log(service), production.log(service)[-2000:]


# Libraries that try these packages and carry on without them (pyarrow writes the Parquet downloads).
OPTIONAL_IMPORTERS = {"openpyxl.compat.numbers", "pyarrow"}
