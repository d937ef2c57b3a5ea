"""The history's rows: the markup people have always seen for ordinary values, and every free-text value (script
names and owners, user and connection names, even a state or kind the code does not know) shown as text, never
as markup, on the page and in its live refresh."""

from __future__ import annotations

import uuid as uuid_lib
import zoneinfo
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from django.utils import timezone

from jobs.models import Job
from jobs.selectors.jobs import HistoryRow
from jobs.states import JobState
from jobs.templatetags.jobs_tags import history_row, render_html
from tests.factories import make_job

CREATED = datetime(2026, 11, 27, 8, 41, 3, 250000, tzinfo=UTC)
JOB_UUID = uuid_lib.UUID("0b6f4c2e-9a51-4d3b-8e27-5f1a9c3d7e80")

# Values a user or an OML server can put in a row, each aiming at a different way out of the text.
HOSTILE = {
    "script_name": '<script>alert("script")</script>',
    "script_owner": 'O\'Brien & "Co" </span><b>x</b>',
    "owner_name": "<img src=x onerror=alert(1)>",
    "connection_name": "Main & <db> \"quoted\" 'single' — ünïcødé 日本 🚀",
}


def row(**fields) -> HistoryRow:
    values = {
        "pk": 1,
        "uuid": JOB_UUID,
        "state": JobState.SUCCEEDED,
        "kind": "group_apply",
        "script_name": "group_count",
        "script_owner": "OMLUSER",
        "created_at": CREATED,
        "finished_at": CREATED + timedelta(minutes=4, seconds=4, microseconds=750000),
        "owner_name": "analyst",
        "connection_name": "Embedded engine",
    } | fields
    return HistoryRow(**values)


class Markup(HTMLParser):
    """The elements, attributes and text of a piece of HTML, as a browser's parser reads them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.cells: list[str] = []
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += attrs
        if tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


ROW_TAGS = ["tr", "td", "span", "td", "a", "td", "td", "span", "td", "td", "td", "time", "td"]


@pytest.fixture
def paris():
    timezone.activate(zoneinfo.ZoneInfo("Europe/Paris"))
    yield
    timezone.deactivate()


def test_an_ordinary_row_is_the_markup_the_page_has_always_had(paris):
    assert str(history_row(row())) == (
        '<tr id="job-0b6f4c2e-9a51-4d3b-8e27-5f1a9c3d7e80" data-state="succeeded">\n'
        '  <td><span class="badge state-succeeded">Succeeded</span></td>\n'
        '  <td><a class="mono" href="/jobs/0b6f4c2e-9a51-4d3b-8e27-5f1a9c3d7e80/" '
        'title="0b6f4c2e-9a51-4d3b-8e27-5f1a9c3d7e80">0b6f4c2e</a></td>\n'
        "  <td>group-apply</td>\n"
        '  <td class="mono">group_count <span class="muted">(OMLUSER)</span></td>\n'
        "  <td>analyst</td>\n"
        "  <td>Embedded engine</td>\n"
        '  <td class="nowrap"><time datetime="2026-11-27T09:41:03.250000+01:00">2026-11-27 09:41:03 CET</time></td>\n'
        '  <td class="num nowrap">4 min 05 s</td>\n'
        "</tr>\n"
    )


def test_a_refreshed_row_without_a_script_owner_is_the_markup_it_has_always_had(paris):
    ordinary = row(state=JobState.FAILED, kind="do_eval", script_name="return_df", script_owner="")
    assert str(history_row(ordinary, oob=True)) == (
        '<tr id="job-0b6f4c2e-9a51-4d3b-8e27-5f1a9c3d7e80" data-state="failed" hx-swap-oob="true">\n'
        '  <td><span class="badge state-failed">Failed</span></td>\n'
        '  <td><a class="mono" href="/jobs/0b6f4c2e-9a51-4d3b-8e27-5f1a9c3d7e80/" '
        'title="0b6f4c2e-9a51-4d3b-8e27-5f1a9c3d7e80">0b6f4c2e</a></td>\n'
        "  <td>do-eval</td>\n"
        '  <td class="mono">return_df</td>\n'
        "  <td>analyst</td>\n"
        "  <td>Embedded engine</td>\n"
        '  <td class="nowrap"><time datetime="2026-11-27T09:41:03.250000+01:00">2026-11-27 09:41:03 CET</time></td>\n'
        '  <td class="num nowrap">4 min 05 s</td>\n'
        "</tr>\n"
    )


def test_an_unfinished_row_says_how_long_so_far():
    running = row(state=JobState.PENDING, created_at=timezone.now() - timedelta(hours=3), finished_at=None)
    markup = str(history_row(running))
    assert '<td class="num nowrap"><span class="muted">3 h 00 min so far</span></td>' in markup
    assert Markup(markup).tags == [*ROW_TAGS, "span"]


def test_the_renderer_escapes_every_value_but_markup_of_its_own():
    assert str(render_html('<p title="{t}">{t}</p>', t="\"&<>'")) == (
        '<p title="&quot;&amp;&lt;&gt;&#x27;">&quot;&amp;&lt;&gt;&#x27;</p>'
    )
    inner = render_html("<i>{x}</i>", x="<b>")
    # The same characters as plain text are escaped: only a SafeString is taken as markup.
    assert str(render_html("<p>{inner}{text}</p>", inner=inner, text="<i>&lt;b&gt;</i>")) == (
        "<p><i>&lt;b&gt;</i>&lt;i&gt;&amp;lt;b&amp;gt;&lt;/i&gt;</p>"
    )


def test_free_text_in_a_row_is_shown_as_text_never_as_markup(paris):
    for oob in (False, True):
        markup = str(history_row(row(**HOSTILE), oob=oob))
        parsed = Markup(markup)
        assert parsed.tags == ROW_TAGS
        assert {name for name, _ in parsed.attributes} <= {
            "id",
            "data-state",
            "hx-swap-oob",
            "class",
            "href",
            "title",
            "datetime",
        }
        assert parsed.cells[3] == f"{HOSTILE['script_name']} ({HOSTILE['script_owner']})"
        assert parsed.cells[4:6] == [HOSTILE["owner_name"], HOSTILE["connection_name"]]
        assert "<script>" not in markup
        assert "<img" not in markup
        assert "<b>" not in markup
        assert "ünïcødé 日本 🚀" in markup  # text, not character references


def test_a_state_or_kind_the_code_does_not_know_is_escaped_in_text_and_attributes(paris):
    state, kind = '"><script>alert(1)</script>', "<b>k</b> & co"
    markup = str(history_row(row(state=state, kind=kind)))
    parsed = Markup(markup)
    assert parsed.tags == [*ROW_TAGS, "span"]  # a state not known to have ended: "so far"
    assert dict(parsed.attributes[:2]) == {"id": f"job-{JOB_UUID}", "data-state": state}
    assert ("class", f"badge state-{state}") in parsed.attributes
    assert [parsed.cells[0], parsed.cells[2]] == [state, kind]
    assert "<script>" not in markup


def _row_markup(page: str, job: Job) -> str:
    start = page.index(f'<tr id="job-{job.uuid}"')
    return page[start : page.index("</tr>", start) + len("</tr>")]


def test_the_history_page_and_its_live_refresh_show_hostile_names_as_text(client, make_user):
    from jobs.services.jobs import connection_save

    owner = make_user(HOSTILE["owner_name"])
    conn = connection_save(
        name=HOSTILE["connection_name"], base_url="http://127.0.0.1:9", username="OMLUSER", password="pw"
    )
    job = make_job(owner, conn, script_name=HOSTILE["script_name"], script_owner=HOSTILE["script_owner"])
    client.force_login(owner)

    page = client.get("/jobs/").content.decode()
    refreshed = client.get("/jobs/rows/", {"id": [str(job.uuid)]}).content.decode()
    for markup in (page, refreshed):
        parsed = Markup(_row_markup(markup, job))
        assert parsed.tags == [*ROW_TAGS, "span"]  # a queued job: "so far"
        assert parsed.cells[3] == f"{HOSTILE['script_name']} ({HOSTILE['script_owner']})"
        assert parsed.cells[4:6] == [HOSTILE["owner_name"], HOSTILE["connection_name"]]
        assert "<script>alert(" not in markup
        assert "<img src=x" not in markup
