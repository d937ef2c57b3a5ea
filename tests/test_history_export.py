"""The history as CSV, from the page's link and from the API: the page's filters, sort and visibility, streamed,
formula-safe and audited."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from jobs.models import Job
from jobs.selectors import jobs as selectors
from jobs.states import JobState
from tests.factories import bulk_jobs, past_jobs


@pytest.fixture
def jobs(analyst, make_user, conn):
    """25 jobs of the analyst (five of them scripts named like formulas, some failed), 5 of someone else."""
    now = timezone.now().replace(microsecond=0)
    past_jobs(
        analyst,
        conn,
        25,
        script=lambda i: "=HYPERLINK(1)" if i % 5 else "s",
        created=lambda i: now - timedelta(minutes=i),
        fields=lambda i, created: {
            "state": JobState.FAILED if i % 3 == 0 else JobState.SUCCEEDED,
            "finished_at": created + timedelta(seconds=i * 7 % 11),
        },
    )
    bulk_jobs(make_user("someone"), conn, 5, script=lambda i: "x")
    return Job.objects.filter(owner=analyst)


def read_csv(response) -> list[dict]:
    assert response.streaming
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_export_lists_every_job_of_the_pages_filters_in_its_order(client, analyst, jobs, monkeypatch):
    # Batches of 4: the export goes through several keyset reads, as it does over many jobs.
    monkeypatch.setattr(selectors, "EXPORT_BATCH", 4)
    client.force_login(analyst)
    response = client.get("/jobs/export.csv", {"state": "succeeded", "sort": "longest"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="jobs-')
    rows = read_csv(response)
    want = sorted(
        jobs.filter(state=JobState.SUCCEEDED), key=lambda j: (j.finished_at - j.created_at, j.pk), reverse=True
    )
    assert [row["job"] for row in rows] == [str(j.uuid) for j in want]
    assert {row["owner"] for row in rows} == {"analyst"}  # never someone else's jobs
    assert all(row["state"] == "succeeded" for row in rows)
    assert float(rows[0]["duration_seconds"]) >= float(rows[-1]["duration_seconds"])


def test_export_cells_a_spreadsheet_would_run_are_text(client, analyst, jobs):
    client.force_login(analyst)
    rows = read_csv(client.get("/jobs/export.csv"))
    assert len(rows) == 25
    assert {row["script"] for row in rows} == {"'=HYPERLINK(1)", "s"}


def test_the_history_page_links_to_the_export_with_its_own_query(client, analyst, jobs):
    client.force_login(analyst)
    page = client.get("/jobs/", {"state": "failed", "sort": "oldest", "after": "1-1"}).content.decode()
    link = re.search(r'<a class="button" href="([^"]+)" id="history-export"', page).group(1)
    assert link == "/jobs/export.csv?state=failed&amp;sort=oldest"
    rows = read_csv(client.get("/jobs/export.csv", {"state": "failed", "sort": "oldest"}))
    assert [row["job"] for row in rows] == [
        str(u) for u in jobs.filter(state=JobState.FAILED).order_by("created_at", "id").values_list("uuid", flat=True)
    ]


def test_each_export_is_audited_with_its_query(client, analyst, jobs):
    client.force_login(analyst)
    read_csv(client.get("/jobs/export.csv", {"script": "s"}))
    entry = AuditEntry.objects.filter(action="history_export").get()
    assert entry.actor == analyst
    assert entry.details == {"format": "csv", "via": "page", "sort": "newest", "query": "script=s"}


def test_an_export_with_a_bad_filter_says_why(client, analyst, jobs):
    client.force_login(analyst)
    response = client.get("/jobs/export.csv", {"created_from": "yesterday"})
    assert response.status_code == 400
    assert "created_from" in response.content.decode()
    assert not AuditEntry.objects.filter(action="history_export").exists()


def test_the_api_exports_the_job_list_as_csv(client, analyst, jobs):
    from accounts.tokens import token_create

    _, raw = token_create(user=analyst, name="export")
    response = client.get(
        "/api/v1/jobs/export", {"state": "failed", "sort": "oldest"}, headers={"Authorization": f"Bearer {raw}"}
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = read_csv(response)
    assert [row["job"] for row in rows] == [
        str(u) for u in jobs.filter(state=JobState.FAILED).order_by("created_at", "id").values_list("uuid", flat=True)
    ]
    assert AuditEntry.objects.filter(action="history_export", details__via="api").count() == 1
    refused = client.get("/api/v1/jobs/export", {"sort": "fastest"}, headers={"Authorization": f"Bearer {raw}"})
    assert refused.status_code == 400
    assert "detail" in refused.json()


def test_the_api_job_list_pages_every_sort_both_ways(client, analyst, jobs):
    client.force_login(analyst)
    for sort in ("newest", "oldest", "longest"):
        seen, pages, params = [], [], {"sort": sort, "limit": 4}
        while True:
            page = client.get("/api/v1/jobs", params).json()
            pages.append([item["id"] for item in page["items"]])
            seen += pages[-1]
            if not page["next_cursor"]:
                break
            params = {"sort": sort, "limit": 4, "cursor": page["next_cursor"]}
        assert len(seen) == len(set(seen)) == 25
        back = client.get("/api/v1/jobs", {"sort": sort, "limit": 4, "before": page["prev_cursor"]}).json()
        assert [item["id"] for item in back["items"]] == pages[-2]
