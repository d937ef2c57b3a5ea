"""Timing analytics equal figures computed by hand for jobs with known timings."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs.selectors.analytics import percentile
from jobs.states import JobState
from tests.results_support import finish_async, make_job, table_rows

DAY1 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
DAY2 = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)
WINDOW = "created_from=2026-03-10&created_to=2026-03-11"

# (queue, OML, fetch) seconds of succeeded jobs.
ALPHA_DAY1 = [(1, 8, 1), (2, 16, 2), (3, 24, 3), (4, 32, 4), (10, 80, 10)]  # totals 10, 20, 30, 40, 100
ALPHA_DAY2 = [(1, 8, 1), (2, 16, 2)]  # totals 10, 20
BETA_DAY1 = [(1, 5, 1)]  # total 7


@pytest.fixture
def jobs(analyst, make_user):
    def add(owner, script, created, timing, state=JobState.SUCCEEDED):
        queue, oml, fetch = timing
        finish_async(make_job(owner, script=script), created=created, queue=queue, oml=oml, fetch=fetch, state=state)

    for i, timing in enumerate(ALPHA_DAY1):
        add(analyst, "alpha", DAY1 + timedelta(minutes=i), timing)
    for i, timing in enumerate(ALPHA_DAY2):
        add(analyst, "alpha", DAY2 + timedelta(minutes=i), timing)
    add(analyst, "beta", DAY1 + timedelta(hours=1), BETA_DAY1[0])
    add(analyst, "alpha", DAY1 + timedelta(hours=2), (1, 3, 0), JobState.FAILED)
    add(analyst, "alpha", DAY1 + timedelta(hours=3), (1, 3, 0), JobState.TIMED_OUT)
    add(analyst, "alpha", DAY1 + timedelta(hours=4), (1, 3, 0), JobState.CANCELLED)
    # Another analyst's jobs are not the viewer's to see, and change nothing.
    add(make_user("someone"), "alpha", DAY1, (500, 500, 500))
    add(make_user("someone_else"), "alpha", DAY1, (1, 1, 1), JobState.FAILED)


def test_percentiles_interpolate_linearly_between_closest_ranks():
    assert percentile([10, 20, 30, 40, 100], 0.5) == 30
    assert percentile([10, 20, 30, 40, 100], 0.95) == pytest.approx(88.0)
    assert percentile([10, 20], 0.95) == pytest.approx(19.5)
    assert percentile([7], 0.95) == 7
    assert percentile([], 0.5) is None


@pytest.mark.django_db
def test_duration_trend_gives_p50_and_p95_per_script_and_day(client, analyst, jobs):
    client.force_login(analyst)
    data = client.get(f"/analytics/trend.json?{WINDOW}").json()
    assert data["days"] == ["2026-03-10", "2026-03-11"]
    series = {(s["script"], s["percentile"]): s["values"] for s in data["series"]}
    assert series == {
        ("alpha", "p50"): [30.0, 15.0],
        ("alpha", "p95"): [88.0, 19.5],
        ("beta", "p50"): [7.0, None],
        ("beta", "p95"): [7.0, None],
    }


@pytest.mark.django_db
def test_phase_split_gives_the_mean_queue_oml_and_fetch_time_per_day(client, analyst, jobs):
    client.force_login(analyst)
    data = client.get(f"/analytics/phases.json?{WINDOW}").json()
    assert data == {
        "days": ["2026-03-10", "2026-03-11"],
        "queue": [3.5, 1.5],
        "oml": [27.5, 12.0],
        "fetch": [3.5, 1.5],
        "lag": [0.0, 0.0],
        "jobs": [6, 2],
    }


@pytest.mark.django_db
def test_outcomes_count_jobs_per_day_by_final_state_with_the_failure_rate(client, analyst, jobs):
    client.force_login(analyst)
    data = client.get(f"/analytics/outcomes.json?{WINDOW}").json()
    counts = {s["state"]: s["counts"] for s in data["states"]}
    assert counts == {"succeeded": [6, 2], "failed": [1, 0], "timed_out": [1, 0], "cancelled": [1, 0]}
    assert data["failure_rate"] == [round(2 / 8, 4), 0.0]


@pytest.mark.django_db
def test_gantt_places_each_phase_of_each_job_after_the_first_start(client, analyst, jobs):
    client.force_login(analyst)
    data = client.get(f"/analytics/gantt.json?{WINDOW}&script=alpha").json()
    first = data["jobs"][0]
    assert data["origin"] == DAY1.isoformat()
    assert first["segments"] == [
        {"phase": "queue", "start": 0.0, "end": 1.0},
        {"phase": "oml", "start": 1.0, "end": 9.0},
        {"phase": "fetch", "start": 9.0, "end": 10.0},
    ]
    assert len(data["jobs"]) == 10


@pytest.mark.django_db
def test_each_chart_brings_the_rows_of_its_table(client, analyst, jobs):
    client.force_login(analyst)
    trend = client.get(f"/analytics/trend.json?{WINDOW}").json()
    assert trend["rows"] == [
        ["alpha", "2026-03-10", 5, 30.0, 88.0],
        ["alpha", "2026-03-11", 2, 15.0, 19.5],
        ["beta", "2026-03-10", 1, 7.0, 7.0],
    ]
    assert trend["approximate"] is False
    phases = client.get(f"/analytics/phases.json?{WINDOW}").json()
    assert [phases[name][0] for name in ("days", "jobs", "queue", "oml", "fetch")] == ["2026-03-10", 6, 3.5, 27.5, 3.5]
    outcomes = client.get(f"/analytics/outcomes.json?{WINDOW}").json()
    assert outcomes["totals"] == [8, 1, 1, 1]
    assert outcomes["failure_rate_total"] == 0.2
    gantt = client.get(f"/analytics/gantt.json?{WINDOW}").json()
    assert {job["script"] for job in gantt["jobs"]} == {"alpha", "beta"}
    assert all(job["created"].startswith("2026-03-1") for job in gantt["jobs"])


@pytest.mark.django_db
def test_the_analytics_page_is_a_shell_that_computes_no_figure(client, analyst, jobs):
    client.force_login(analyst)
    with CaptureQueriesContext(connection) as queries:
        html = client.get(f"/analytics/?{WINDOW}").content.decode()
    # Every figure is computed once, by the JSON endpoint its chart and table are drawn from.
    assert not [q["sql"] for q in queries.captured_queries if "jobs_job" in q["sql"]]
    for chart in ("trend", "phases", "outcomes", "gantt"):
        assert f'data-src="/analytics/{chart}.json?{WINDOW.replace("&", "&amp;")}"' in html
    assert table_rows(html, "table-trend")[1] == ["Loading…"]
    assert "vendor/chart.umd" in html
    assert "<script>" not in html


@pytest.mark.django_db
def test_filters_narrow_the_figures_like_the_history_page(client, analyst, jobs):
    client.force_login(analyst)
    data = client.get(f"/analytics/trend.json?{WINDOW}&script=beta").json()
    assert [(s["script"], s["percentile"], s["values"]) for s in data["series"]] == [
        ("beta", "p50", [7.0]),
        ("beta", "p95", [7.0]),
    ]


@pytest.mark.django_db
def test_the_analytics_page_without_jobs_says_there_is_nothing_to_show(client, analyst):
    client.force_login(analyst)
    html = client.get("/analytics/").content.decode()
    assert "No succeeded jobs match." in html
    assert "No jobs match." in html
    assert client.get("/analytics/gantt.json").json() == {"origin": None, "origin_label": "", "jobs": []}
    assert client.get("/analytics/trend.json").json()["rows"] == []
