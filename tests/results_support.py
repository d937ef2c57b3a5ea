"""Arrangement for the results and analytics tests: jobs with stored results and known timings, made through
the services (job_transition along allowed moves, job_result_store), never by mocking."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from jobs.models import Connection, Job
from jobs.results.bodies import describe_body
from jobs.services.jobs import connection_save, job_result_store, job_transition
from jobs.states import JobKind, JobState


def default_connection() -> Connection:
    existing = Connection.objects.filter(is_default=True).first()
    return existing or connection_save(
        name="Test OML", base_url="http://127.0.0.1:9", username="OMLUSER", password="omluser", is_default=True
    )


def make_job(owner, *, script: str = "score", kind: str = JobKind.DO_EVAL, parent=None, **fields) -> Job:
    extra = {
        JobKind.TABLE_APPLY: {"input_sql": "select * from IRIS"},
        JobKind.ROW_APPLY: {"input_sql": "select * from IRIS", "rows": 10},
        JobKind.GROUP_APPLY: {"input_sql": "select * from IRIS", "group_by": "SPECIES"},
        JobKind.INDEX_APPLY: {"times": 3},
    }.get(kind, {})
    return Job.objects.create(
        owner=owner,
        connection=default_connection(),
        kind=kind,
        script_name=script,
        parent=parent,
        **{**extra, **fields},
    )


def finish_async(
    job: Job, *, created: datetime, queue: float, oml: float, fetch: float, state=JobState.SUCCEEDED, lag: float = 0.0
):
    """Move a job queued -> submitting -> pending -> fetching -> `state` at known times after `created`; OML
    last answered "still running" `lag` seconds before its finish was seen."""
    Job.objects.filter(pk=job.pk).update(created_at=created)
    submitted = created + timedelta(seconds=queue)
    oml_done = submitted + timedelta(seconds=oml)
    fetched = oml_done + timedelta(seconds=fetch)
    assert job_transition(
        job_id=job.pk, to_state=JobState.SUBMITTING, reason="test", at=submitted, submitted_at=submitted
    )
    assert job_transition(
        job_id=job.pk,
        to_state=JobState.PENDING,
        reason="test",
        at=submitted,
        next_poll_at=submitted,
        oml_accepted_at=submitted,
    )
    if state == JobState.SUCCEEDED:
        assert job_transition(
            job_id=job.pk,
            to_state=JobState.FETCHING,
            reason="test",
            at=oml_done,
            oml_finished_at=oml_done,
            oml_last_running_at=oml_done - timedelta(seconds=lag),
            next_poll_at=None,
        )
        assert job_transition(
            job_id=job.pk, to_state=state, reason="test", at=fetched, result_fetched_at=fetched, finished_at=fetched
        )
    else:
        assert job_transition(job_id=job.pk, to_state=state, reason="test", at=oml_done, finished_at=oml_done)
    job.refresh_from_db()
    return job


def store_result(job: Job, body: bytes | dict | list, *, chunk_size: int | None = None, with_columns: bool = True):
    """Store `body` (bytes as they are; anything else as {"result": body}) as the job's result, described as the
    worker describes it; `with_columns=False` stores it as results stored before their columns were recorded."""
    raw = body if isinstance(body, bytes) else json.dumps({"result": body}).encode()
    described = describe_body(raw)
    size = chunk_size or len(raw) or 1
    chunks = [raw[i : i + size] for i in range(0, len(raw), size)] or [b""]
    return job_result_store(
        job_id=job.pk,
        chunks=chunks,
        content_type="application/json",
        row_count=described.rows,
        shape=described.shape,
        columns=described.columns if with_columns else None,
    )


def succeeded_job_with_result(
    owner, body, *, kind: str = JobKind.DO_EVAL, script: str = "score", with_columns: bool = True, **fields
) -> Job:
    from django.utils import timezone

    job = make_job(owner, kind=kind, script=script, **fields)
    finish_async(job, created=timezone.now() - timedelta(minutes=5), queue=1, oml=10, fetch=0.5)
    store_result(job, body, with_columns=with_columns)
    return job


# --- Reading pages and files back ---------------------------------------------------------------


def table_rows(html: str, table_id: str) -> list[list[str]]:
    """The text of each cell of the table with this id, row by row (header row included)."""
    from html.parser import HTMLParser

    class Parser(HTMLParser):
        def __init__(self):
            super().__init__()
            self.depth = 0  # > 0 while inside the wanted table
            self.rows: list[list[str]] = []
            self.cell: list[str] | None = None

        def handle_starttag(self, tag, attrs):
            if tag == "table" and (self.depth or dict(attrs).get("id") == table_id):
                self.depth += 1
            elif self.depth == 1 and tag == "tr":
                self.rows.append([])
            elif self.depth == 1 and tag in ("td", "th"):
                self.cell = []

        def handle_endtag(self, tag):
            if tag == "table" and self.depth:
                self.depth -= 1
            elif self.depth == 1 and tag in ("td", "th") and self.cell is not None:
                self.rows[-1].append(" ".join("".join(self.cell).split()))
                self.cell = None

        def handle_data(self, data):
            if self.depth and self.cell is not None:
                self.cell.append(data)

    parser = Parser()
    parser.feed(html)
    return parser.rows


def parse_cell(text: str):
    """A CSV cell back to a JSON value: empty is null, JSON numbers and booleans are themselves, anything else
    is the string it is."""
    if text == "":
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, bool | int | float) else text


def png_base64(width: int = 4, height: int = 3) -> str:
    import base64
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()
