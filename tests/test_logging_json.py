"""Logs an operator can search: one JSON object per line in production, each carrying the request id or the
job's uuid; readable text in development.

The web server is gunicorn started exactly as production starts it (deploy/gunicorn.conf.py, DEBUG and
LOG_FORMAT unset); the worker is a stack of this test's own, logging at INFO.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured

from accounts.tokens import token_create
from jobs.models import Job
from jobs.services.jobs import connection_save
from jobs.states import TERMINAL_STATES, JobState
from omlpy_dashboard.logs import (
    ContextFilter,
    JsonLineFormatter,
    TextFormatter,
    log_bind,
    log_context,
    log_format_from,
)
from tests.conftest import analysts_team
from tests.stack import ROOT, free_port, wait_for
from tests.stack import test_database_url as database_url

GENERATED_ID = re.compile(r"[0-9a-f]{32}")
JSON_FIELDS = {"time", "level", "logger", "message", "process", "pid"}


class ProductionWeb:
    """gunicorn with the production configuration file, its output in one file."""

    def __init__(self, log_path: Path):
        self.port = free_port()
        self.log_path = log_path
        env = {name: value for name, value in os.environ.items() if name not in ("DEBUG", "LOG_FORMAT")}
        env.update(
            GUNICORN_BIND=f"127.0.0.1:{self.port}",
            WEB_CONCURRENCY="1",
            LOG_LEVEL="INFO",
            SECURE_SSL_REDIRECT="false",
            SECURE_COOKIES="false",
            DATABASE_URL=database_url(),
            PYTHONUNBUFFERED="1",
        )
        argv = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "omlpy_dashboard.wsgi:application"]
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(f"http://127.0.0.1:{self.port}{path}", timeout=30, allow_redirects=False, **kwargs)

    def answers(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {self.log_path.read_text(errors='replace')[-2000:]}")
        try:
            return self.get("/livez").status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@pytest.fixture
def production_web(transactional_db, tmp_path):
    web = ProductionWeb(tmp_path / "gunicorn.log")
    try:
        wait_for(web.answers, timeout=60, what="gunicorn to answer")
        yield web
    finally:
        web.stop()


def json_lines(text: str) -> tuple[list[dict], list[str]]:
    """The lines of `text` that are JSON objects, and those that are not."""
    records: list[dict] = []
    others: list[str] = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            others.append(line)
    return records, others


def finished_line(records: list[dict], request_id: str) -> dict:
    lines = [r for r in records if r["message"] == "request finished" and r.get("request_id") == request_id]
    assert len(lines) == 1, (request_id, lines)
    return lines[0]


def test_gunicorn_in_production_writes_only_json_lines_and_each_request_line_carries_its_request_id(
    production_web, analyst
):
    _, token = token_create(user=analyst, name="logs")
    chosen = production_web.get(
        "/accounts/login/?next=/jobs/&token=query-string-secret", headers={"X-Request-ID": "trace-42.a_B"}
    )
    hostile_id = 'abc" injected="1 two words'
    hostile = production_web.get("/accounts/login/", headers={"X-Request-ID": hostile_id})
    api = production_web.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"})
    reset = production_web.get("/accounts/reset/MQ/reset-link-secret/")
    probe = production_web.get("/livez")
    static = production_web.get("/static/css/app.css")
    missing = production_web.get("/no-such-page/")
    assert [r.status_code for r in (chosen, hostile, api, reset, probe, static)] == [200] * 6
    assert missing.status_code == 404
    production_web.stop()
    text = production_web.log_path.read_text()

    records, others = json_lines(text)
    assert others == []
    for record in records:
        assert record.keys() >= JSON_FIELDS, record
        assert datetime.fromisoformat(record["time"]).utcoffset() == timedelta(0), record
    # gunicorn's own lines are JSON too.
    assert any(r["logger"] == "gunicorn.error" and "Booting worker" in r["message"] for r in records), text

    # A safe id sent by the caller is kept, answered back and logged with the request.
    assert chosen.headers["X-Request-ID"] == "trace-42.a_B"
    line = finished_line(records, "trace-42.a_B")
    assert (line["level"], line["method"], line["path"], line["status"]) == ("INFO", "GET", "/accounts/login/", 200)
    assert isinstance(line["duration_ms"], int | float)
    assert "user_id" not in line  # nobody is signed in
    # A hostile one is replaced by a new id, and appears nowhere.
    assert GENERATED_ID.fullmatch(hostile.headers["X-Request-ID"])
    assert finished_line(records, hostile.headers["X-Request-ID"])["path"] == "/accounts/login/"
    assert "injected" not in text
    # Without one, the generated id is the one answered and logged; the token's user is named by id.
    assert GENERATED_ID.fullmatch(api.headers["X-Request-ID"])
    line = finished_line(records, api.headers["X-Request-ID"])
    assert (line["path"], line["status"], line["user_id"]) == ("/api/v1/jobs", 200, analyst.pk)
    # Django's own line about a 4xx answer, written after the middleware returned, still names the request.
    warning = [r for r in records if r["logger"] == "django.request" and r["message"] == "Not Found: /no-such-page/"]
    assert [r.get("request_id") for r in warning] == [missing.headers["X-Request-ID"]]
    # Neither the query string, nor a secret in the path, nor the token reach the log.
    assert finished_line(records, reset.headers["X-Request-ID"])["path"] == "/accounts/reset/MQ/[redacted]/"
    for secret in ("query-string-secret", "reset-link-secret", token):
        assert secret not in text
    # Probes and static files are logged at DEBUG only, below this server's level.
    assert probe.headers["X-Request-ID"] not in text
    assert static.headers["X-Request-ID"] not in text


@pytest.fixture
def worker_stack(own_stack):
    """Web, engine and a worker (with beat) of this test's own, at INFO, on a queue nobody else reads."""
    return own_stack({"LOG_LEVEL": "INFO", "CELERY_QUEUE": f"logs-{uuid.uuid4().hex[:12]}"})


def test_a_worker_logs_each_line_about_a_job_as_json_carrying_the_jobs_uuid(worker_stack, analyst):
    connection_save(
        name="Engine",
        base_url=worker_stack.base_url,
        username="OMLUSER",
        password="omluser",
        is_default=True,
        teams=[analysts_team()],
    )
    _, token = token_create(user=analyst, name="logs")
    # The worker's start-up lines still come, as JSON objects.
    wait_for(
        lambda: any(r["message"].endswith(" ready.") for r in json_lines(worker_stack.log("worker"))[0]),
        timeout=60,
        what="the worker to be ready",
    )
    # Submitted through the stack's own web server: the message goes to the queue only its worker reads.
    created = requests.post(
        worker_stack.url("/api/v1/jobs"),
        headers={"Authorization": f"Bearer {token}"},
        json={"kind": "do_eval", "script": "timer", "parameters": {"seconds": 1}, "asyncFlag": True},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    job = Job.objects.get(uuid=created.json()["id"])
    wait_for(lambda: Job.objects.get(pk=job.pk).state in TERMINAL_STATES, timeout=90, what="the job to end")
    assert Job.objects.get(pk=job.pk).state == JobState.SUCCEEDED

    about_job = [line for line in worker_stack.log("worker").splitlines() if f"job {job.pk}:" in line]
    records, others = json_lines("\n".join(about_job))
    assert others == []
    assert {r.get("job") for r in records} == {str(job.uuid)}
    moves = {r["message"].split(" (")[0] for r in records if r["logger"] == "jobs.services.jobs"}
    # The submission is this worker's; polls may be swept by any worker on the database.
    assert {f"job {job.pk}: queued -> submitting", f"job {job.pk}: submitting -> pending"} <= moves, moves


# --- In-process checks of the formats and the context -------------------------------------------------------


def record_of(message: str, *args: object, **fields: object) -> logging.LogRecord:
    """A record as the handler sees it: with the current context added."""
    record = logging.LogRecord("jobs.worker.lifecycle", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(fields)
    ContextFilter().filter(record)
    return record


def test_log_format_defaults_to_json_in_production_and_text_in_development():
    assert log_format_from(None, debug=False) == "json"
    assert log_format_from("", debug=True) == "text"
    assert log_format_from(" JSON ", debug=True) == "json"
    with pytest.raises(ImproperlyConfigured, match="LOG_FORMAT must be json or text, not 'yaml'"):
        log_format_from("yaml", debug=False)


def test_development_text_is_readable_and_names_the_context():
    with log_context(request_id="r-1"):
        record = record_of("hello %s", "there", job="0b6f")
    line = TextFormatter().format(record)
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
    assert line.endswith("INFO jobs.worker.lifecycle hello there [request_id=r-1 job=0b6f]")


def test_a_job_bound_inside_a_log_context_leaves_with_it_and_an_explicit_field_wins():
    @log_context()
    def work_on(job_uuid: str) -> dict:
        log_bind(job=job_uuid)
        inside = json.loads(JsonLineFormatter().format(record_of("working")))
        explicit = json.loads(JsonLineFormatter().format(record_of("moved", job="other")))
        return {"inside": inside["job"], "explicit": explicit["job"]}

    with log_context(request_id="r-2"):
        assert work_on("5d1c") == {"inside": "5d1c", "explicit": "other"}
        after = json.loads(JsonLineFormatter().format(record_of("done")))
    assert "job" not in after
    assert after["request_id"] == "r-2"
    assert "request_id" not in json.loads(JsonLineFormatter().format(record_of("outside")))


def test_settings_with_debug_on_log_text_and_an_unknown_log_format_refuses_to_start():
    script = "import django, logging; django.setup(); logging.getLogger('omlpy_dashboard.check').warning('hello')"
    env = {name: value for name, value in os.environ.items() if name != "LOG_FORMAT"}
    env["DJANGO_SETTINGS_MODULE"] = "omlpy_dashboard.settings"
    development = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env={**env, "DEBUG": "true"}, capture_output=True, text=True
    )
    assert development.returncode == 0, development.stderr
    assert re.search(r"^\S+ \S+ WARNING omlpy_dashboard.check hello$", development.stderr, re.MULTILINE)
    refused = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env={**env, "LOG_FORMAT": "yaml"}, capture_output=True, text=True
    )
    assert refused.returncode != 0
    assert "LOG_FORMAT must be json or text, not 'yaml'" in refused.stderr
