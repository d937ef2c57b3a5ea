"""The analytics' hourly rollups: kept as jobs end, rebuilt from rows written any other way, moved (never
added twice) when retention removes jobs, and read into the viewer's days."""

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from accounts.models import Profile
from jobs.models import Job, JobRollup
from jobs.selectors import analytics
from jobs.services.rollups import rollups_rebuild
from jobs.states import JobState
from tests.results_support import finish_async, make_job

DAY1 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
WINDOW = "created_from=2026-03-09&created_to=2026-03-12"

pytestmark = pytest.mark.django_db


def figures(client) -> dict:
    return {chart: client.get(f"/analytics/{chart}.json?{WINDOW}").json() for chart in ("trend", "phases", "outcomes")}


def live_rollups() -> list[tuple]:
    return sorted(
        JobRollup.objects.filter(purged=False).values_list(
            "hour", "owner_id", "script_name", "kind", "state", "jobs", "queue_n", "oml_n", "fetch_n", "durations"
        )
    )


@pytest.fixture
def finished(analyst):
    made = []
    for i, (script, state) in enumerate(
        [("alpha", JobState.SUCCEEDED)] * 4 + [("alpha", JobState.FAILED), ("beta", JobState.SUCCEEDED)]
    ):
        job = make_job(analyst, script=script)
        made.append(
            finish_async(job, created=DAY1 + timedelta(minutes=20 * i), queue=1, oml=4 + i, fetch=1, state=state)
        )
    return made


def test_a_job_is_rolled_up_in_the_transaction_that_ends_it(analyst):
    job = make_job(analyst, script="alpha")
    assert not JobRollup.objects.exists()
    finish_async(job, created=DAY1, queue=1, oml=8, fetch=1)
    rollup = JobRollup.objects.get()
    assert (rollup.hour, rollup.owner_id, rollup.script_name, rollup.state) == (DAY1, analyst.pk, "alpha", "succeeded")
    assert (rollup.jobs, rollup.queue_sum, rollup.oml_sum, rollup.fetch_sum) == (1, 1.0, 8.0, 1.0)
    assert sum(rollup.durations.values()) == 1
    assert rollup.purged is False


def test_the_rebuild_says_what_the_live_rollups_say(finished):
    kept = live_rollups()
    assert kept
    JobRollup.objects.all().delete()
    out = io.StringIO()
    call_command("rollups_rebuild", stdout=out)
    assert out.getvalue() == "Rolled up 6 finished jobs.\n"
    assert live_rollups() == kept


def test_rows_written_by_sql_count_once_rebuilt(client, analyst, finished):
    client.force_login(analyst)
    before = figures(client)
    # A row written behind the services' back (as the benchmark fills its table): no rollup yet.
    extra = make_job(analyst, script="beta")
    Job.objects.filter(pk=extra.pk).update(
        state=JobState.FAILED, created_at=DAY1, finished_at=DAY1 + timedelta(seconds=3)
    )
    assert figures(client) == before
    rollups_rebuild(start=DAY1 - timedelta(days=1), end=DAY1 + timedelta(days=1))
    after = figures(client)
    assert after["outcomes"]["states"][1]["counts"] == [2]  # failed: the job ended by SQL, now counted once
    rollups_rebuild(start=DAY1 - timedelta(days=1), end=DAY1 + timedelta(days=1))
    assert figures(client) == after


def test_the_purge_moves_jobs_to_the_purged_rollups_without_counting_them_twice(client, analyst, finished, settings):
    from jobs.services.retention import purge

    settings.RETENTION_RESULT_DAYS, settings.RETENTION_JOB_DAYS = 30, 90
    settings.RETENTION_PURGE_PAUSE = 0
    client.force_login(analyst)
    before = figures(client)
    jobs_before = sum(JobRollup.objects.values_list("jobs", flat=True))
    assert purge().jobs == 6
    assert not Job.objects.exists()
    assert not JobRollup.objects.filter(purged=False).exists()
    assert sum(JobRollup.objects.filter(purged=True).values_list("jobs", flat=True)) == jobs_before == 6
    after = figures(client)
    assert after["outcomes"] == before["outcomes"]
    assert after["phases"] == before["phases"]
    # A rebuild after the purge leaves the purged jobs counted.
    rollups_rebuild()
    assert figures(client)["outcomes"] == before["outcomes"]


def test_days_are_the_viewers_with_hours_crossing_midnight_in_the_day_they_start(client, analyst):
    # 22:10 and 23:50 UTC on 10 March: in Kolkata (+05:30) both are 11 March (03:40 and 05:20).
    for minute in (22 * 60 + 10, 23 * 60 + 50):
        created = datetime(2026, 3, 10, tzinfo=UTC) + timedelta(minutes=minute)
        finish_async(make_job(analyst, script="alpha"), created=created, queue=1, oml=2, fetch=1)
    client.force_login(analyst)
    assert client.get(f"/analytics/outcomes.json?{WINDOW}").json()["days"] == ["2026-03-10"]
    Profile.objects.update_or_create(user=analyst, defaults={"timezone": "Asia/Kolkata"})
    assert client.get(f"/analytics/outcomes.json?{WINDOW}").json()["days"] == ["2026-03-11"]
    page = client.get(f"/analytics/?{WINDOW}").content.decode()
    assert "Asia/Kolkata" in page
    assert "not a whole number of hours" in page


def test_percentiles_from_buckets_are_said_to_be_approximate_with_their_error(client, analyst, finished, monkeypatch):
    client.force_login(analyst)
    exact = client.get(f"/analytics/trend.json?{WINDOW}").json()
    assert exact["approximate"] is False
    monkeypatch.setattr(analytics, "EXACT_MAX", 1)
    approximate = client.get(f"/analytics/trend.json?{WINDOW}").json()
    assert approximate["approximate"] is True  # the page shows its note (id trend-approximate) then
    assert approximate["days"] == exact["days"]
    for old, new in zip(exact["series"], approximate["series"], strict=True):
        assert old["script"] == new["script"]
        for a, b in zip(old["values"], new["values"], strict=True):
            assert b == pytest.approx(a, rel=0.025)
    page = client.get(f"/analytics/?{WINDOW}").content.decode()
    assert "within about 2.5 % of the exact one" in page


def test_bucket_counts_summed_by_the_database_equal_those_read_row_by_row(client, analyst, finished):
    from django.utils import timezone

    from jobs.models import JobRollup as Rollup
    from jobs.selectors.analytics import bucket_counts, bucket_counts_in_python

    for zone in ("UTC", "Asia/Kolkata", "America/St_Johns"):
        with timezone.override(zone):
            succeeded = Rollup.objects.filter(state=JobState.SUCCEEDED).values("script_name", "hour", "durations")
            summed = sorted(bucket_counts(Rollup.objects.all()))
            assert summed == sorted(bucket_counts_in_python(succeeded))
            assert sum(n for *_, n in summed) == 5


def test_team_rollups_bucket_counts_summed_by_the_database_equal_those_read_row_by_row(client, analyst, finished):
    from django.utils import timezone

    from jobs.models import TeamRollup
    from jobs.selectors.analytics import bucket_counts, bucket_counts_in_python

    hourly = sorted(bucket_counts(JobRollup.objects.all()))
    for zone in ("UTC", "Asia/Kolkata", "America/St_Johns"):
        with timezone.override(zone):
            succeeded = TeamRollup.objects.filter(state=JobState.SUCCEEDED).values("hour", "durations")
            summed = sorted(bucket_counts(TeamRollup.objects.all()))
            assert summed == sorted(bucket_counts_in_python(succeeded))
            assert summed == sorted(bucket_counts(JobRollup.objects.all()))
    assert sum(n for *_, n in hourly) == 5
