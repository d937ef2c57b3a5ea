"""Team rollups: the hourly rollups summed over owner, connection, script and kind, kept as jobs end (in the same
transaction as the hourly ones), rebuilt with them, left as they were by a purge; what an administrator and a
team's viewer read when no owner, connection, script or kind is chosen. Run on SQLite and on PostgreSQL."""

import io
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db.models import Count, Sum

from accounts.models import Membership, Team
from jobs.models import Job, JobRollup, TeamRollup
from jobs.selectors import analytics
from jobs.selectors.jobs import HistoryFilters, job_history_queryset
from jobs.services.rollups import duration_bucket, rollups_for
from jobs.states import TERMINAL_STATES, JobKind, JobState
from tests.results_support import finish_async, make_job

DAY1 = datetime(2026, 3, 10, 7, 0, tzinfo=UTC)
START = datetime(2026, 3, 9, tzinfo=UTC)
WINDOW = "created_from=2026-03-09&created_to=2026-03-12"
FILTERS = HistoryFilters(created_from=START, created_to=START + timedelta(days=3))
SUMMED = ("jobs", "queue_sum", "queue_n", "oml_sum", "oml_n", "lag_sum", "lag_n", "fetch_sum", "fetch_n")
STATES = [JobState.SUCCEEDED, JobState.SUCCEEDED, JobState.FAILED, JobState.SUCCEEDED, JobState.TIMED_OUT]

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(make_user):
    risk = Team.objects.create(name="Risk", shares_history=True)
    pricing = Team.objects.create(name="Pricing", shares_history=False)
    ann, bob, cy = make_user("ann"), make_user("bob"), make_user("cy")
    Membership.objects.create(user=ann, team=risk, role=Membership.Role.ANALYST)
    Membership.objects.create(user=bob, team=risk, role=Membership.Role.ANALYST)
    Membership.objects.create(user=cy, team=pricing, role=Membership.Role.ANALYST)
    admin = make_user("root", is_staff=True, is_superuser=True)
    return {"risk": risk, "pricing": pricing, "ann": ann, "bob": bob, "cy": cy, "admin": admin}


@pytest.fixture
def ended(people):
    """Jobs of three owners, two teams (and one of Ann's filed under Pricing, one under no team: jobs keep the
    team they were submitted under), two scripts and kinds, over several hours and states, ended through the
    services."""
    owners = [
        (people["ann"], people["risk"]),
        (people["bob"], people["risk"]),
        (people["cy"], people["pricing"]),
        (people["ann"], people["pricing"]),
        (people["ann"], None),
    ]
    made = []
    for i in range(20):
        owner, team = owners[i % len(owners)]
        job = make_job(owner, script="alpha" if i % 3 else "beta", kind=[JobKind.DO_EVAL, JobKind.TABLE_APPLY][i % 2])
        Job.objects.filter(pk=job.pk).update(team=team)
        made.append(
            finish_async(
                job,
                created=DAY1 + timedelta(minutes=23 * i),
                queue=1 + i % 4,
                oml=3 + 2 * i,
                fetch=0.5,
                lag=i % 2,
                state=STATES[i % len(STATES)],
            )
        )
    # Beside Bob's alpha of 07:23 (Risk, succeeded): same hour, team, script and state, another owner and kind.
    job = make_job(people["ann"], script="alpha", kind=JobKind.DO_EVAL)
    Job.objects.filter(pk=job.pk).update(team=people["risk"])
    made.append(finish_async(job, created=DAY1 + timedelta(minutes=40), queue=2, oml=30, fetch=1))
    return made


def team_rollups() -> dict[tuple, tuple]:
    """What the team rollups hold, per key (one row per key)."""
    found = {}
    for row in TeamRollup.objects.values("hour", "team_id", "state", *SUMMED, "durations"):
        key = (row["hour"], row["team_id"], row["state"])
        assert key not in found, f"two team rollups for {key}"
        found[key] = (*(round(row[name], 6) for name in SUMMED), row["durations"])
    return found


def hourly_summed() -> dict[tuple, tuple]:
    """The hourly rollups (both parts) summed by the database per team rollup key, their histograms gathered
    per script here."""
    sums = JobRollup.objects.values("hour", "team_id", "state").annotate(
        **{f"total_{name}": Sum(name) for name in SUMMED}
    )
    histograms: dict[tuple, dict[str, Counter]] = {}
    for row in JobRollup.objects.values("hour", "team_id", "state", "script_name", "durations"):
        if row["durations"]:
            per_script = histograms.setdefault((row["hour"], row["team_id"], row["state"]), {})
            per_script.setdefault(row["script_name"], Counter()).update(row["durations"])
    return {
        (row["hour"], row["team_id"], row["state"]): (
            *(round(row[f"total_{name}"], 6) for name in SUMMED),
            {
                script: dict(counts)
                for script, counts in histograms.get((row["hour"], row["team_id"], row["state"]), {}).items()
            },
        )
        for row in sums
    }


def counted_from_rows() -> dict[tuple, tuple[int, dict]]:
    """Finished jobs and their duration buckets per script, per (hour, team, state), from the job rows."""
    found: dict[tuple, tuple[int, dict]] = {}
    for job in Job.objects.filter(state__in=TERMINAL_STATES):
        hour = job.created_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        jobs, per_script = found.get((hour, job.team_id, job.state), (0, {}))
        if job.state == JobState.SUCCEEDED:
            bucket = str(duration_bucket((job.finished_at - job.created_at).total_seconds()))
            per_script.setdefault(job.script_name, Counter())[bucket] += 1
        found[(hour, job.team_id, job.state)] = (jobs + 1, per_script)
    return {key: (jobs, {s: dict(c) for s, c in per_script.items()}) for key, (jobs, per_script) in found.items()}


def test_team_rollups_are_the_hourly_rollups_summed_and_count_the_rows(ended):
    kept = team_rollups()
    assert len(kept) > 5
    assert kept == hourly_summed()
    assert {key: (values[0], values[-1]) for key, values in kept.items()} == counted_from_rows()
    # Dropping owner, connection, script and kind gathered jobs the hourly rollups keep apart.
    assert TeamRollup.objects.count() < JobRollup.objects.count()


def test_the_rebuild_makes_the_same_team_rollups_and_leaves_them_alone_elsewhere(ended):
    kept = team_rollups()
    TeamRollup.objects.all().delete()
    out = io.StringIO()
    call_command("rollups_rebuild", stdout=out)
    assert out.getvalue() == "Rolled up 21 finished jobs.\n"
    assert team_rollups() == kept
    # A rebuild of other days removes no team rollup and adds none.
    call_command("rollups_rebuild", "--since", "2026-04-01", "--until", "2026-04-02", stdout=io.StringIO())
    assert team_rollups() == kept


def test_a_purge_leaves_the_team_rollups_and_the_administrators_figures_as_they_were(client, people, ended, settings):
    from jobs.services.retention import purge

    settings.RETENTION_RESULT_DAYS, settings.RETENTION_JOB_DAYS = 30, 90
    settings.RETENTION_PURGE_PAUSE = 0
    client.force_login(people["admin"])
    charts = ("trend", "phases", "outcomes")
    before = {chart: client.get(f"/analytics/{chart}.json?{WINDOW}").json() for chart in charts}
    kept = team_rollups()
    assert purge().jobs == 21
    assert not Job.objects.exists()
    assert not JobRollup.objects.filter(purged=False).exists()
    assert team_rollups() == kept == hourly_summed()
    after = {chart: client.get(f"/analytics/{chart}.json?{WINDOW}").json() for chart in charts}
    assert after["outcomes"] == before["outcomes"]
    assert after["phases"] == before["phases"]
    # The trend was exact from the rows; with its jobs purged it is read from the buckets, and says so.
    assert before["trend"]["approximate"] is False
    assert after["trend"]["approximate"] is True
    assert after["trend"]["days"] == before["trend"]["days"]
    # A rebuild after the purge keeps them: the hourly rollups of purged jobs are summed too.
    call_command("rollups_rebuild", stdout=io.StringIO())
    assert team_rollups() == kept


def figures_from_rollups_and_rows(user) -> tuple[dict, dict]:
    jobs, rollups = job_history_queryset(user, FILTERS), rollups_for(user, FILTERS)
    rolled = {
        "outcomes": [(d.day, d.counts) for d in analytics.outcomes(jobs, rollups)],
        "phases": analytics.phase_split(jobs, rollups),
    }
    raw = {"outcomes": [(d.day, d.counts) for d in analytics.outcomes(jobs)], "phases": analytics.phase_split(jobs)}
    return rolled, raw


def test_an_administrator_reads_the_team_rollups_with_the_rows_figures(people, ended):
    admin = people["admin"]
    rollups = rollups_for(admin, FILTERS)
    assert [part.model for part in rollups.parts] == [TeamRollup]
    rolled, raw = figures_from_rollups_and_rows(admin)
    assert rolled == raw
    assert sum(sum(counts.values()) for _, counts in rolled["outcomes"]) == 21
    jobs = job_history_queryset(admin, FILTERS)
    exact = {(p.script, p.day): p for p in analytics.duration_trend(jobs)}
    bucketed = {(p.script, p.day): p for p in analytics.trend_from_buckets(rollups)}
    assert exact.keys() == bucketed.keys()
    for key, point in exact.items():
        assert bucketed[key].jobs == point.jobs
        assert bucketed[key].p50 == pytest.approx(point.p50, rel=0.025)
        assert bucketed[key].p95 == pytest.approx(point.p95, rel=0.025)
    # An owner, a kind or a script chosen: the hourly rollups, which know them.
    for chosen in (
        HistoryFilters(created_from=START, owner="ann"),
        HistoryFilters(created_from=START, kind=[JobKind.DO_EVAL]),
        HistoryFilters(created_from=START, script="alpha"),
    ):
        assert [part.model for part in rollups_for(admin, chosen).parts] == [JobRollup]


def test_a_team_viewer_reads_whole_teams_from_team_rollups_and_their_other_jobs_by_the_hour(people, ended):
    ann, cy = people["ann"], people["cy"]
    # Ann sees Risk (it shares its history) and her own jobs filed under Pricing and under no team.
    rollups = rollups_for(ann, FILTERS)
    assert [part.model for part in rollups.parts] == [TeamRollup, JobRollup]
    rolled, raw = figures_from_rollups_and_rows(ann)
    assert rolled == raw
    visible = job_history_queryset(ann, FILTERS).filter(state__in=TERMINAL_STATES)
    assert sum(sum(counts.values()) for _, counts in rolled["outcomes"]) == visible.count() == 17
    assert set(visible.values_list("team_id", flat=True)) == {people["risk"].pk, people["pricing"].pk, None}
    # Cy's team does not share: only his own jobs, by the hour.
    assert [part.model for part in rollups_for(cy, FILTERS).parts] == [JobRollup]
    rolled, raw = figures_from_rollups_and_rows(cy)
    assert rolled == raw
    assert sum(sum(counts.values()) for _, counts in rolled["outcomes"]) == 4


def test_a_team_viewers_trend_is_exact_until_exact_max_then_read_from_both_levels(client, people, ended, monkeypatch):
    ann = people["ann"]
    client.force_login(ann)
    exact = client.get(f"/analytics/trend.json?{WINDOW}").json()
    assert exact["approximate"] is False
    monkeypatch.setattr(analytics, "EXACT_MAX", 1)
    approximate = client.get(f"/analytics/trend.json?{WINDOW}").json()
    assert approximate["approximate"] is True
    assert [row[:3] for row in approximate["rows"]] == [row[:3] for row in exact["rows"]]
    for old, new in zip(exact["rows"], approximate["rows"], strict=True):
        assert new[3] == pytest.approx(old[3], rel=0.025)
        assert new[4] == pytest.approx(old[4], rel=0.025)
    succeeded = job_history_queryset(ann, FILTERS).filter(state=JobState.SUCCEEDED)
    assert sum(row[2] for row in approximate["rows"]) == succeeded.count()


def test_jobs_per_team_rollup_equal_the_rows_whatever_the_viewer_counts(people, ended):
    """The team rollups' counts per team equal the job rows' (the same figure both levels give an auditor)."""
    per_team = dict(TeamRollup.objects.values("team_id").annotate(n=Sum("jobs")).values_list("team_id", "n"))
    rows = dict(
        Job.objects.filter(state__in=TERMINAL_STATES)
        .values("team_id")
        .annotate(n=Count("id"))
        .values_list("team_id", "n")
    )
    assert per_team == rows
