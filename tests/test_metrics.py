"""/metrics: the token that guards it, and values that equal what happened to a known sequence of jobs."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import requests
from django.db.models import Sum
from django.test import override_settings

from accounts.models import Membership, Team
from jobs.models import Connection, Job, JobResult, JobTransition
from jobs.selectors.timing import oml_bounds
from jobs.services.jobs import job_create
from jobs.services.specs import parse_job_request
from jobs.states import TERMINAL_STATES
from metrics import recorder, store
from metrics.models import MetricCounter
from omlengine.models import EngineCall, EngineJob
from tests.metrics_support import samples, scrape_text, value
from tests.stack import wait_for


@pytest.mark.django_db
def test_metrics_answer_404_while_no_token_is_configured(client):
    with override_settings(METRICS_TOKEN=""):
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


@pytest.mark.django_db
def test_metrics_refuse_a_missing_or_wrong_token_and_answer_the_right_one(client, settings):
    settings.METRICS_TOKEN = "the-right-token"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer the-wrong-token").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Basic the-right-token").status_code == 401
    answer = client.get("/metrics", HTTP_AUTHORIZATION="Bearer the-right-token", HTTP_HOST="10.1.2.3:8000")
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/plain; version=")
    assert "# TYPE omlpy_jobs gauge" in answer.content.decode()


@pytest.mark.django_db(transaction=True)
def test_counters_flushed_by_several_flushes_add_up_and_an_unknown_name_is_refused():
    recorder.drain()  # what earlier tests of this process counted and never flushed is not this test's
    recorder.inc("omlpy_oml_requests_total", operation="status", code="202")
    recorder.inc("omlpy_oml_requests_total", 2, operation="status", code="202")
    recorder.observe("omlpy_job_detection_lag_seconds", 0.3)
    store.flush()
    recorder.inc("omlpy_oml_requests_total", operation="status", code="202")
    recorder.observe("omlpy_job_detection_lag_seconds", 45)
    store.flush()
    assert not recorder.has_pending()
    totals = {(row.name, row.labels): row.value for row in MetricCounter.objects.all()}
    assert totals[("omlpy_oml_requests_total", '{"code":"202","operation":"status"}')] == 4
    assert totals[("omlpy_job_detection_lag_seconds_count", "{}")] == 2
    assert totals[("omlpy_job_detection_lag_seconds_sum", "{}")] == pytest.approx(45.3)
    lag = {labels["le"]: v for labels, v in _families()["omlpy_job_detection_lag_seconds_bucket"]}
    assert lag["0.25"] == 0
    assert lag["0.5"] == 1
    assert lag["30.0"] == 1
    assert lag["60.0"] == 2
    assert lag["+Inf"] == 2
    with pytest.raises(KeyError):
        recorder.inc("omlpy_no_such_total")
    with pytest.raises(ValueError, match="labels"):
        recorder.inc("omlpy_oml_requests_total", operation="status")


def _families():
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)

    class Stored:
        def collect(self):
            return store.families()

    registry.register(Stored())
    return samples(generate_latest(registry).decode())


def _submit(owner, **request) -> Job:
    return job_create(owner=owner, spec=parse_job_request(request))


def test_metric_values_after_a_known_sequence_of_jobs_equal_what_happened(live, make_user):
    started = time.time()
    # Counters are compared as what this test added to them: a task of an earlier test of the session's
    # stack may have ended, and flushed, after that test's tables were emptied.
    baseline = samples(scrape_text(live.base_url))
    owner = make_user("metrics-analyst")
    team = Team.objects.create(name="Risk")
    Membership.objects.create(user=owner, team=team, role=Membership.Role.ANALYST)
    Connection.default().teams.add(team)  # connections are granted to teams
    jobs = [
        _submit(owner, kind="do_eval", script="timer", parameters={"seconds": 1.5}),
        _submit(owner, kind="do_eval", script="timer", parameters={"seconds": 1.0}),
        _submit(owner, kind="do_eval", script="fail_always"),
        _submit(owner, kind="do_eval", script="return_df", parameters={"num": 3, "scale": 2}, asyncFlag=False),
    ]

    def ended():
        return all(Job.objects.get(pk=job.pk).state in TERMINAL_STATES for job in jobs)

    wait_for(ended, timeout=90, what="the four jobs to end")
    states = Counter(Job.objects.filter(pk__in=[job.pk for job in jobs]).values_list("state", flat=True))
    assert states == {"succeeded": 3, "failed": 1}
    transitions = Counter(JobTransition.objects.values_list("to_state", flat=True))

    # Counters reach the database at the end of each task: wait until the last transition is in.
    def flushed():
        found = samples(scrape_text(live.base_url))
        counted = {
            state: added
            for state in {labels["to_state"] for labels, _ in found["omlpy_job_transitions_total"]}
            if (added := growth(found, "omlpy_job_transitions_total", to_state=state))
        }
        return found if counted == transitions else None

    def growth(found, name: str, **labels: str) -> float:
        return value(found, name, **labels) - value(baseline, name, **labels)

    found = wait_for(flushed, timeout=30, what="the transitions to be counted")

    # omlpy_jobs equals the jobs table, series by series.
    in_database = Counter()
    for state, connection, kind in Job.objects.values_list("state", "connection__name", "kind"):
        in_database[(state, connection, kind)] += 1
    gauge = {(s["state"], s["connection"], s["kind"]): v for s, v in found["omlpy_jobs"] if v}
    assert gauge == dict(in_database)

    # Polls: what the jobs recorded, what the engine received, and what the counters say are one number.
    polls = Job.objects.aggregate(n=Sum("poll_count"))["n"]
    assert polls == EngineJob.objects.aggregate(n=Sum("status_requests"))["n"]
    assert growth(found, "omlpy_polls_total") == polls
    assert growth(found, "omlpy_oml_requests_total", operation="status") == polls
    assert growth(found, "omlpy_oml_requests_total", operation="status", code="302") == 3

    # Submissions: three accepted asynchronously (201), one answered synchronously (200); the engine agrees.
    assert growth(found, "omlpy_oml_requests_total", operation="submit", code="201") == 3
    assert growth(found, "omlpy_oml_requests_total", operation="submit", code="200") == 1
    assert growth(found, "omlpy_oml_requests_total", operation="submit") == EngineCall.objects.count() == 4
    seen_finished = JobTransition.objects.filter(to_state="fetching").count()
    assert seen_finished == 3
    # Results: two fetched; the failed script's result answered with the script's error.
    assert growth(found, "omlpy_oml_requests_total", operation="result", code="200") == 2
    refused = {
        labels["code"]: added
        for labels, _ in found["omlpy_oml_requests_total"]
        if labels["operation"] == "result" and labels["code"] != "200"
        if (added := growth(found, "omlpy_oml_requests_total", operation="result", code=labels["code"]))
    }
    assert sum(refused.values()) >= 1
    assert all(code[0] in "45" for code in refused), refused
    assert growth(found, "omlpy_oml_request_duration_seconds_count", operation="submit") == 4

    # Histograms: one OML duration per job seen finished and per synchronous call; one lag per job seen finished.
    assert growth(found, "omlpy_job_oml_duration_seconds_count") == seen_finished + 1
    assert growth(found, "omlpy_job_detection_lag_seconds_count") == seen_finished
    assert growth(found, "omlpy_job_detection_lag_seconds_bucket", le="+Inf") == seen_finished
    # The OML time observed is the middle of each job's bounds (jobs.selectors.timing): the sum lies between the sums of
    # the bounds the jobs recorded, and each timer's upper bound holds the seconds it slept.
    # (The synchronous call observes its request's latency, which its recorded span holds.)
    bounds = {job.pk: oml_bounds(Job.objects.get(pk=job.pk)) for job in jobs}
    observed = growth(found, "omlpy_job_oml_duration_seconds_sum")
    lowest = sum(bounds[job.pk].low for job in jobs[:3])
    assert lowest - 0.01 <= observed <= sum(b.high for b in bounds.values()) + 0.01
    assert bounds[jobs[0].pk].high >= 1.5
    assert bounds[jobs[1].pk].high >= 1.0

    # Result bytes per team: what is stored.
    stored = JobResult.objects.filter(job__team=team).aggregate(n=Sum("size_bytes"))["n"]
    assert stored > 0
    assert value(found, "omlpy_result_bytes", team="Risk") == stored
    # Nothing is due any more, and a sweep completed during the test.
    assert value(found, "omlpy_poll_backlog_seconds") == 0
    assert value(found, "omlpy_sweep_last_success_timestamp_seconds") >= started


def test_metrics_are_answered_by_any_web_process_without_a_host_check(live):
    # Prometheus scrapes each web process by address, with a Host header the site does not list.
    answer = requests.get(
        f"{live.base_url}/metrics",
        headers={"Authorization": "Bearer test-only-metrics-token-5b7e", "Host": "10.0.0.7:8000"},
        timeout=20,
    )
    assert answer.status_code == 200
    assert "omlpy_jobs" in answer.text
