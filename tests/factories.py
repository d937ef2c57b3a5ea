"""Arrangement of the history tests: a connection nobody serves, jobs made directly in the database, and past
jobs with chosen times and states. The history only reads rows, so no worker needs to touch these jobs.

The fixtures over them (`conn`, `signed_in`) are in tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from jobs.models import Connection, Job
from jobs.services.jobs import connection_save
from jobs.states import JobKind

# No OML service listens there: jobs of this connection are only ever read.
UNSERVED_URL = "http://127.0.0.1:9"


def unserved_connection(teams: list | None = None) -> Connection:
    """The default connection, granted to `teams` (default: the analysts' team), at an address nobody serves."""
    from tests.conftest import analysts_team

    return connection_save(
        name="Embedded engine",
        base_url=UNSERVED_URL,
        username="OMLUSER",
        password="omluser",
        is_default=True,
        teams=[analysts_team()] if teams is None else teams,
    )


def make_job(owner, conn: Connection, **fields) -> Job:
    """One queued do_eval job of `owner` (fields override the kind, the script and anything else)."""
    values = {"kind": JobKind.DO_EVAL, "script_name": "return_df"} | fields
    return Job.objects.create(owner=owner, connection=conn, **values)


def bulk_jobs(owner, conn: Connection, count: int, *, script: Callable[[int], str] = "script_{}".format) -> list[Job]:
    """`count` queued do_eval jobs of `owner` in one INSERT; job i runs `script(i)`."""
    return Job.objects.bulk_create(
        [Job(owner=owner, connection=conn, kind=JobKind.DO_EVAL, script_name=script(i)) for i in range(count)]
    )


def past_jobs(
    owner,
    conn: Connection,
    count: int,
    *,
    script: Callable[[int], str],
    created: Callable[[int], datetime],
    fields: Callable[[int, datetime], dict[str, Any]],
) -> list[Job]:
    """`count` jobs of `owner` from the past: job i runs `script(i)`, was created at `created(i)` and then holds
    `fields(i, created)` (its state, finished_at, ...). created_at is set on insert, so it is moved afterwards,
    row by row, as the history's sorts need exact times."""
    made = bulk_jobs(owner, conn, count, script=script)
    for i, job in enumerate(made):
        moment = created(i)
        Job.objects.filter(pk=job.pk).update(created_at=moment, **fields(i, moment))
    return made
