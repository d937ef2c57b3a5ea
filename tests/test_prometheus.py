"""The alert rules and the Grafana dashboard against a real scrape, and a real Prometheus scraping the test stack."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest
import requests
import yaml
from django.conf import settings

from accounts.models import Membership
from jobs.services.jobs import job_create
from jobs.services.specs import parse_job_request
from tests.conftest import analysts_team
from tests.metrics_support import samples, scrape_text
from tests.stack import ROOT, free_port, stop_process_group, wait_for

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "omlpy-dashboard.json"
METRIC_NAME = re.compile(r"\bomlpy_[a-z_]+\b")
HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")


def _rule_expressions() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def _dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def _names_used() -> set[str]:
    used = set()
    for expression in _rule_expressions() + _dashboard_expressions():
        used.update(METRIC_NAME.findall(expression))
    return used


def _run_one_job(live, make_user) -> None:
    from jobs.models import Job

    owner = make_user("prometheus-analyst")
    Membership.objects.create(user=owner, team=analysts_team(), role=Membership.Role.ANALYST)
    job = job_create(
        owner=owner, spec=parse_job_request({"kind": "do_eval", "script": "timer", "parameters": {"seconds": 0.5}})
    )
    wait_for(lambda: Job.objects.get(pk=job.pk).state == "succeeded", timeout=60, what="the job to succeed")


def test_the_rules_and_the_dashboard_use_only_metrics_that_a_real_scrape_has(live, make_user):
    _run_one_job(live, make_user)
    scraped = set(samples(scrape_text(live.base_url)))
    used = _names_used()
    assert len(used) >= 10, used
    # A histogram's name is used through its series: name_bucket, name_sum, name_count.
    missing = sorted(name for name in used if name not in scraped)
    assert missing == [], f"used by deploy/ but not in a scrape: {missing}"
    for name in used:
        if name.endswith(HISTOGRAM_PARTS):
            assert name in scraped


def test_the_dashboard_is_grafana_json_whose_panels_each_query_prometheus():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "omlpy-dashboard"
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["type"] == "prometheus"


def test_promtool_accepts_the_rules_and_their_unit_tests_pass():
    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed: `make test` installs Debian's prometheus package"
    for argv in (
        [promtool, "check", "rules", str(ALERTS)],
        [promtool, "test", "rules", str(ALERTS.with_name("alerts.test.yml"))],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def prometheus(live, tmp_path):
    """A real Prometheus on loopback scraping the test stack's /metrics every second, with the alert rules."""
    binary = shutil.which("prometheus")
    assert binary, "Prometheus is needed: `make test` installs Debian's prometheus package"
    token_file = tmp_path / "token"
    token_file.write_text(settings.METRICS_TOKEN)
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "alerts.yml")],
        "scrape_configs": [
            {
                "job_name": "omlpy-test",
                "metrics_path": "/metrics",
                "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
                "static_configs": [{"targets": [live.base_url.removeprefix("http://")]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(proc)
        log.close()


def _query(base_url: str, expression: str) -> list[dict]:
    answer = requests.get(f"{base_url}/api/v1/query", params={"query": expression}, timeout=10).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_a_real_prometheus_scrapes_the_stack_and_finds_the_series(live, make_user, prometheus):
    _run_one_job(live, make_user)
    wait_for(lambda: _query(prometheus, 'up{job="omlpy-test"} == 1'), timeout=30, what="Prometheus to scrape the stack")
    # The scrape after the job's counters were flushed holds them.
    found = wait_for(
        lambda: _query(prometheus, 'omlpy_job_transitions_total{to_state="succeeded"} >= 1'),
        timeout=30,
        what="the succeeded transition in Prometheus",
    )
    assert found[0]["metric"]["job"] == "omlpy-test"
    succeeded = _query(prometheus, 'sum(omlpy_jobs{state="succeeded"})')
    assert float(succeeded[0]["value"][1]) == 1
    names = set(requests.get(f"{prometheus}/api/v1/label/__name__/values", timeout=10).json()["data"])
    for name in _names_used():
        assert name in names, f"{name} is not among the series Prometheus stored"
    # The rules loaded and evaluate; a healthy stack fires none of them.
    groups = requests.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(rules) == {
        "OmlpyJobFailureRatioHigh",
        "OmlpyPollBacklogGrowing",
        "OmlpySweepStalled",
        "OmlpySweepNeverRecorded",
        "OmlpyOmlServerErrors",
        "OmlpyOmlTokenFailures",
    }
    time.sleep(1.5)  # one more evaluation round, at the configured 1 s interval
    assert all(rule["health"] == "ok" for rule in rules.values()), rules
    assert _query(prometheus, 'ALERTS{alertstate="firing"}') == []
