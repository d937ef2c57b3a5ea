"""The analytics charts in Chromium stay legible with one day of data and with a year: few date ticks, a small
legend, and a day's trend drawn as bars rather than a column of dots."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import Job
from jobs.services.rollups import rollups_rebuild
from jobs.states import JobState
from tests.results_support import make_job

pytestmark = pytest.mark.browser

MAX_TICKS = 12
MAX_LEGEND = 8
CHARTS = ("trend", "phases", "outcomes")

READ_CHARTS = """() => {
  const out = {};
  document.querySelectorAll("canvas[data-chart]").forEach((canvas) => {
    const chart = Chart.getChart(canvas);
    out[canvas.dataset.chart] = {
      type: chart.config.type,
      ticks: chart.scales.x.ticks.length,
      legend: chart.legend.legendItems.length,
      legendHeight: chart.legend.height,
      height: chart.height,
    };
  });
  return out;
}"""


def finished(owner, script: str, created, seconds: float, state=JobState.SUCCEEDED) -> None:
    job = make_job(owner, script=script)
    # Arranged directly, as rows from the past that no worker touches; the rollups are rebuilt from them after.
    Job.objects.filter(pk=job.pk).update(
        created_at=created, state=state, finished_at=created + timedelta(seconds=seconds)
    )


def charts_of(page, live, query: str = "") -> dict:
    page.goto(live.url(f"/analytics/?{query}"))
    for chart in (*CHARTS, "gantt"):
        page.wait_for_selector(f"canvas[data-chart={chart}][data-drawn=true]", state="attached")
    return page.evaluate(READ_CHARTS)


def assert_legible(charts: dict) -> None:
    for name in CHARTS:
        chart = charts[name]
        assert chart["ticks"] <= MAX_TICKS, (name, chart)
        assert chart["legend"] <= MAX_LEGEND, (name, chart)
        assert chart["legendHeight"] <= chart["height"] / 3, (name, chart)


def test_charts_of_one_day_are_legible(live, page, login, analyst):
    now = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)
    for i in range(10):  # ten scripts on one day: the old trend was a column of dots under twenty legend entries
        for j in range(3):
            finished(analyst, f"script_{i}", now + timedelta(minutes=j), 2 + i + j)
    finished(analyst, "script_0", now, 5, JobState.FAILED)
    rollups_rebuild()
    login(page, "analyst")
    charts = charts_of(page, live)
    assert charts["trend"]["type"] == "bar"
    assert charts["trend"]["ticks"] == 6  # the six busiest scripts, one bar pair each
    assert_legible(charts)
    assert page.locator("#table-trend tbody tr").count() == 10  # every script in the table
    # The tables are filled from the charts' own figures: script_0 ran 2, 3 and 4 s.
    first = page.locator("#table-trend tbody tr").first.locator("td").all_inner_texts()
    assert [first[0], *first[2:]] == ["script_0", "3", "3.0", "3.9"]
    total = page.locator("#table-outcomes tr.total").locator("th, td").all_inner_texts()
    assert total == ["Total", "30", "1", "0", "0", "0.0323"]
    assert page.locator("#table-gantt tbody tr").count() == 31


def test_charts_of_a_year_are_legible(live, page, login, analyst):
    today = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)
    for day in range(365):
        for script in ("daily_a", "daily_b"):
            finished(analyst, script, today - timedelta(days=day), 10 + day % 7)
    for day in range(0, 365, 30):
        for i in range(8):
            finished(analyst, f"monthly_{i}", today - timedelta(days=day), 30 + i)
    rollups_rebuild()
    login(page, "analyst")
    year_ago = (today - timedelta(days=366)).date().isoformat()
    charts = charts_of(page, live, f"created_from={year_ago}")
    assert charts["trend"]["type"] == "line"
    assert_legible(charts)
    assert charts["trend"]["legend"] == 6
