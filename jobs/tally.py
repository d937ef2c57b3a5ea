"""The tally of finished jobs (JobTally): kept in step with the jobs table, read by /metrics and the storage page.

- `tally_add` runs in the transaction that finishes a job (jobs.services.job_transition) and in the one that
  purges (jobs.retention), so the tally always equals what the jobs table holds.
- `tally_rebuild` recounts it from the jobs table: once when it is created (its migration), and by
  `manage.py jobs_tally --rebuild` after rows were written some other way (a restore, a benchmark's fill).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection, transaction

from .models import JobTally

_KEY = ("state", "connection_id", "kind", "team_key")
_AMOUNTS = ("jobs", "results", "result_bytes")


@dataclass(frozen=True)
class TallyChange:
    state: str
    connection_id: int
    kind: str
    team_id: int | None
    jobs: int = 0
    results: int = 0
    result_bytes: int = 0


def _sql(rows: int) -> str:
    quote = connection.ops.quote_name
    table = quote(JobTally._meta.db_table)
    columns = ", ".join(quote(name) for name in (*_KEY, *_AMOUNTS))
    values = ", ".join(["(" + ", ".join(["%s"] * (len(_KEY) + len(_AMOUNTS))) + ")"] * rows)
    updates = ", ".join(f"{quote(name)} = {table}.{quote(name)} + excluded.{quote(name)}" for name in _AMOUNTS)
    return (
        f"INSERT INTO {table} ({columns}) VALUES {values} "  # noqa: S608 - names from the model
        f"ON CONFLICT ({', '.join(quote(name) for name in _KEY)}) DO UPDATE SET {updates}"
    )


def tally_add(changes: Iterable[TallyChange]) -> None:
    """Add (or, with negative amounts, take away) counts, in the caller's transaction.

    Changes to the same row are summed first, and rows are written in key order, so that two transactions
    touching the same rows lock them in the same order.
    """
    summed: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    for change in changes:
        key = (change.state, change.connection_id, change.kind, change.team_id or 0)
        amounts = summed[key]
        amounts[0] += change.jobs
        amounts[1] += change.results
        amounts[2] += change.result_bytes
    rows = [(*key, *amounts) for key, amounts in sorted(summed.items()) if any(amounts)]
    if not rows:
        return
    with connection.cursor() as cursor:
        cursor.execute(_sql(len(rows)), [value for row in rows for value in row])


def tally_rebuild() -> int:
    """Recount the tally from the jobs and results tables, in one transaction; returns its rows."""
    from .models import Job, JobResult
    from .states import TERMINAL_STATES

    quote = connection.ops.quote_name
    job_table, result_table = quote(Job._meta.db_table), quote(JobResult._meta.db_table)
    terminal = sorted(TERMINAL_STATES)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Jobs finishing meanwhile wait for the recount, and are then added to it (SQLite: one writer anyway).
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {quote(JobTally._meta.db_table)} IN EXCLUSIVE MODE")
        JobTally.objects.all().delete()
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT j.state, j.connection_id, j.kind, COALESCE(j.team_id, 0), COUNT(*), COUNT(r.id), "  # noqa: S608
                f"COALESCE(SUM(r.size_bytes), 0) FROM {job_table} j LEFT JOIN {result_table} r ON r.job_id = j.id "
                f"WHERE j.state IN ({', '.join(['%s'] * len(terminal))}) "
                "GROUP BY j.state, j.connection_id, j.kind, COALESCE(j.team_id, 0)",
                terminal,
            )
            rows = cursor.fetchall()
        JobTally.objects.bulk_create(
            JobTally(
                state=state,
                connection_id=connection_id,
                kind=kind,
                team_key=team,
                jobs=jobs,
                results=results,
                result_bytes=size,
            )
            for state, connection_id, kind, team, jobs, results, size in rows
        )
    return len(rows)


@dataclass(frozen=True)
class TallyRow:
    state: str
    connection_id: int
    kind: str
    team_id: int | None
    jobs: int
    results: int
    result_bytes: int


def tally_rows(known_teams: set[int]) -> list[TallyRow]:
    """The tally, with rows of teams that no longer exist merged into "no team" (their jobs' team is NULL now)."""
    merged: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    for state, connection_id, kind, team, *amounts in JobTally.objects.values_list(*_KEY, *_AMOUNTS):
        key = (state, connection_id, kind, team if team in known_teams else 0)
        for index, amount in enumerate(amounts):
            merged[key][index] += amount
    return [
        TallyRow(state, connection_id, kind, team or None, *amounts)
        for (state, connection_id, kind, team), amounts in sorted(merged.items())
        if any(amounts)
    ]
