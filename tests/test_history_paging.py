"""Every sort of the history pages through all matching jobs, by keyset links both ways."""

from __future__ import annotations

import html
import re
import uuid as uuid_lib
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import Job
from jobs.selectors.jobs import HistoryFilters, job_history_sorted
from jobs.states import JobState
from tests.factories import bulk_jobs, past_jobs

NEXT = re.compile(r'href="([^"]+)"\s+rel="next"')
PREV = re.compile(r'href="([^"]+)"\s+rel="prev"')
ROW = re.compile(r'<tr id="job-([0-9a-f-]{36})"')


@pytest.fixture
def jobs(analyst, make_user, conn):
    """130 jobs of the analyst within the last days, with ties on created_at and on duration, 17 of them still
    running; and 20 of someone else, which the analyst never sees."""
    now = timezone.now().replace(microsecond=0)

    def fields(i, created):
        unfinished = i % 8 == 0
        # ten distinct durations: many jobs share one
        return {
            "state": JobState.PENDING if unfinished else JobState.SUCCEEDED,
            "next_poll_at": now if unfinished else None,
            "finished_at": None if unfinished else created + timedelta(seconds=10 * (i % 10) + 1),
        }

    past_jobs(
        analyst,
        conn,
        130,
        script=lambda i: f"script_{i % 5}",
        created=lambda i: now - timedelta(hours=i // 3),  # three jobs share each moment
        fields=fields,
    )
    bulk_jobs(make_user("someone"), conn, 20, script=lambda i: "x")
    return Job.objects.filter(owner=analyst)


def expected(jobs, sort: str) -> list[int]:
    rows = list(jobs.values_list("pk", "created_at", "finished_at"))
    if sort == "newest":
        rows.sort(key=lambda r: (r[1], r[0]), reverse=True)
    elif sort == "oldest":
        rows.sort(key=lambda r: (r[1], r[0]))
    else:
        finished = sorted((r for r in rows if r[2]), key=lambda r: (r[2] - r[1], r[0]), reverse=True)
        running = sorted((r for r in rows if not r[2]), key=lambda r: (r[1], r[0]), reverse=True)
        rows = finished + running
    return [r[0] for r in rows]


@pytest.mark.parametrize("sort", ["newest", "oldest", "longest"])
def test_each_sort_pages_to_its_end_and_back_against_the_count(jobs, analyst, sort):
    filters = HistoryFilters()
    want = expected(jobs, sort)
    seen, pages, cursor = [], [], None
    while True:
        page = job_history_sorted(analyst, filters, sort=sort, cursor=cursor, limit=7)
        pages.append([row.pk for row in page.items])
        seen += pages[-1]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == jobs.count() == 130
    assert seen == want
    # Back from the last page to the first through each page's "before" cursor: the same pages, in turn.
    back, before = [], page.prev_cursor
    while before is not None:
        page = job_history_sorted(analyst, filters, sort=sort, before=before, limit=7)
        back.append([row.pk for row in page.items])
        before = page.prev_cursor
    assert back == pages[-2::-1]


@pytest.mark.parametrize("sort", ["newest", "oldest", "longest"])
def test_each_sort_of_a_filtered_history_pages_to_its_end(jobs, analyst, sort):
    filters = HistoryFilters(script="script_2", state=[JobState.SUCCEEDED])
    want = expected(jobs.filter(script_name="script_2", state=JobState.SUCCEEDED), sort)
    seen, cursor = [], None
    while True:
        page = job_history_sorted(analyst, filters, sort=sort, cursor=cursor, limit=4)
        seen += [row.pk for row in page.items]
        if not (cursor := page.next_cursor):
            break
    assert seen == want
    assert len(want) > 4


@pytest.mark.parametrize("sort", ["newest", "oldest", "longest"])
def test_history_page_links_reach_every_job_older_and_newer(client, jobs, analyst, sort):
    client.force_login(analyst)
    uuids = dict(jobs.values_list("uuid", "pk"))
    url, seen, visited = f"/jobs/?sort={sort}", [], []
    while url:
        body = client.get(url).content.decode()
        visited.append(url)
        seen += [uuids[uuid] for uuid in map(uuid_lib.UUID, ROW.findall(body))]
        found = NEXT.search(body)
        url = "/jobs/" + html.unescape(found.group(1)) if found else None
    assert seen == expected(jobs, sort)
    assert len(visited) == 3  # 50 + 50 + 30
    assert "End of the list." in body
    # The last page links back to the one before it, which lists the same rows as when reached going forward.
    back = "/jobs/" + html.unescape(PREV.search(body).group(1))
    again = client.get(back).content.decode()
    assert ROW.findall(again) == ROW.findall(client.get(visited[1]).content.decode())
    assert PREV.search(again)
    assert NEXT.search(again)
    first = client.get(f"/jobs/?sort={sort}").content.decode()
    assert not PREV.search(first)


def test_a_link_with_a_broken_cursor_gives_the_first_page_with_a_warning(client, jobs, analyst):
    client.force_login(analyst)
    response = client.get("/jobs/", {"sort": "longest", "after": "d12-x"})
    assert response.status_code == 200
    assert "That page link is no longer valid" in response.content.decode()
    assert len(ROW.findall(response.content.decode())) == 50


@pytest.mark.parametrize("sort", ["newest", "oldest", "longest"])
def test_a_cursor_of_another_sort_still_names_a_position(jobs, analyst, sort):
    longest = job_history_sorted(analyst, HistoryFilters(), sort="longest", limit=50)
    newest = job_history_sorted(analyst, HistoryFilters(), sort="newest", limit=50)
    for cursor in (longest.next_cursor, newest.next_cursor, "n" + newest.next_cursor):
        page = job_history_sorted(analyst, HistoryFilters(), sort=sort, cursor=cursor, limit=10)
        back = job_history_sorted(analyst, HistoryFilters(), sort=sort, before=cursor, limit=10)
        assert len(page.items) + len(back.items) > 0
