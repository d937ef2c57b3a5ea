"""The gauges of /metrics, read from the database at scrape time in a few indexed queries.

- `omlpy_jobs{state, connection, kind}`: jobs now in each state. Finished jobs come from the tally
  (jobs.services.tally: a small table kept in step with the jobs table), unfinished ones are counted live through the
  partial index on active jobs; so the sum equals the jobs table at any size.
- `omlpy_poll_backlog_seconds`: how overdue the most overdue poll is (the due-poll index's first entry).
- `omlpy_result_bytes{team}`: bytes of stored result bodies, per team (from the tally: results are stored in
  the transaction that finishes a job, and removed in the one that purges them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from accounts.models import Team
from jobs.models import Connection, Job
from jobs.services.tally import tally_rows
from jobs.states import ACTIVE_STATES, JobState

NO_TEAM = "none"


def _names() -> tuple[dict[int, str], dict[int, str]]:
    return dict(Connection.objects.values_list("pk", "name")), dict(Team.objects.values_list("pk", "name"))


def job_counts(connections: dict[int, str], teams: dict[int, str]) -> dict[tuple[str, str, str], int]:
    """Jobs per (state, connection name, kind): the tally's finished jobs plus a live count of active ones."""
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for row in tally_rows(set(teams)):
        if row.jobs:
            counts[(row.state, connections.get(row.connection_id, str(row.connection_id)), row.kind)] += row.jobs
    active = (
        Job.objects.filter(state__in=sorted(ACTIVE_STATES))
        .values_list("state", "connection_id", "kind")
        # COUNT(*), not COUNT(id): the grouped columns are all in job_active_count_idx, so PostgreSQL can
        # answer from the index without visiting the rows.
        .annotate(n=Count("*"))
        .order_by()
    )
    for state, connection_id, kind, n in active:
        counts[(state, connections.get(connection_id, str(connection_id)), kind)] += n
    return counts


def poll_backlog_seconds() -> float:
    oldest = Job.objects.filter(state=JobState.PENDING).aggregate(due=Min("next_poll_at"))["due"]
    return max(0.0, (timezone.now() - oldest).total_seconds()) if oldest else 0.0


def result_bytes_by_team(teams: dict[int, str]) -> dict[str, int]:
    by_team: dict[str, int] = defaultdict(int)
    for row in tally_rows(set(teams)):
        by_team[teams.get(row.team_id, NO_TEAM) if row.team_id else NO_TEAM] += row.result_bytes
    return by_team


def families() -> Iterable[Metric]:
    connections, teams = _names()
    jobs = GaugeMetricFamily("omlpy_jobs", "Jobs now in each state.", labels=["state", "connection", "kind"])
    for (state, connection, kind), n in sorted(job_counts(connections, teams).items()):
        jobs.add_metric([state, connection, kind], n)
    yield jobs
    yield GaugeMetricFamily(
        "omlpy_poll_backlog_seconds",
        "How overdue the most overdue status poll is (0: none is).",
        poll_backlog_seconds(),
    )
    stored = GaugeMetricFamily("omlpy_result_bytes", "Bytes of stored result bodies, per team.", labels=["team"])
    for team, size in sorted(result_bytes_by_team(teams).items()):
        stored.add_metric([team], size)
    yield stored
