"""The result, compare and analytics pages in Chromium, under the site's Content Security Policy."""

import json

import pytest
from django.utils import timezone

from jobs.states import JobKind
from tests.results_support import finish_async, make_job, png_base64, store_result, succeeded_job_with_result

pytestmark = pytest.mark.browser

EVIL = "<script>alert(1)</script>"


def watch(page) -> dict[str, list[str]]:
    """Record dialogs (accepted at once) and Content Security Policy complaints on the page."""
    seen: dict[str, list[str]] = {"dialogs": [], "csp": []}

    def on_dialog(dialog):
        seen["dialogs"].append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on(
        "console",
        lambda message: seen["csp"].append(message.text) if "Content Security Policy" in message.text else None,
    )
    return seen


def test_script_in_a_cell_and_in_a_dict_key_renders_inert_as_visible_text(live, page, login, make_user):
    analyst = make_user("analyst")
    records = [{EVIL: EVIL, "HTML": "<img src=x onerror=alert(2)>", "NESTED": {EVIL: [EVIL]}}]
    table_job = succeeded_job_with_result(analyst, records)
    tree_job = succeeded_job_with_result(analyst, {EVIL: {"<b onmouseover=alert(3)>": EVIL}})
    graphics_job = succeeded_job_with_result(
        analyst, [{"IMAGE": png_base64(), "DATA": json.dumps({EVIL: EVIL}), "ID": 1}]
    )
    seen = watch(page)
    login(page, "analyst")

    page.goto(live.url(f"/jobs/{table_job.uuid}/result/"))
    header = page.locator("#result-table thead th").nth(1)
    assert header.text_content() == EVIL  # the header is shown upper-cased by CSS
    assert page.locator("#result-table tbody td").nth(1).inner_text() == EVIL
    assert page.locator("#result-table tbody td").nth(2).inner_text() == "<img src=x onerror=alert(2)>"
    page.locator("#result-table tbody td details summary").first.click()
    assert page.get_by_text(EVIL, exact=True).first.is_visible()
    assert page.locator("#result-table script, #result-table img").count() == 0

    page.goto(live.url(f"/jobs/{tree_job.uuid}/result/"))
    assert page.locator("#result-tree .tree-key").first.inner_text() == EVIL
    assert page.get_by_text("<b onmouseover=alert(3)>", exact=True).is_visible()

    page.goto(live.url(f"/jobs/{graphics_job.uuid}/result/"))
    assert page.locator("#result-graphics img").count() == 1
    assert page.evaluate("document.querySelector('#result-graphics img').naturalWidth") == 4
    assert page.locator("#result-graphics .tree-key").first.inner_text() == EVIL

    page.goto(live.url(f"/jobs/{table_job.uuid}/result/raw/"))
    assert EVIL in page.inner_text("#result-raw pre")
    page.wait_for_timeout(300)
    assert seen["dialogs"] == []
    assert seen["csp"] == []


def test_the_timing_charts_draw_under_the_content_security_policy(live, page, login, make_user):
    analyst = make_user("analyst")
    now = timezone.now()
    for i, (queue, oml) in enumerate([(1, 5), (2, 8), (1, 30)]):
        job = make_job(analyst, script="alpha" if i < 2 else "beta")
        finish_async(job, created=now - timezone.timedelta(hours=3, minutes=i), queue=queue, oml=oml, fetch=0.5)
    seen = watch(page)
    login(page, "analyst")
    page.goto(live.url("/analytics/"))
    for chart in ("trend", "phases", "outcomes", "gantt"):
        page.wait_for_selector(f"canvas[data-chart={chart}][data-drawn=true]")
    assert page.locator("#table-trend tbody tr").count() == 2
    assert page.locator("#table-gantt tbody tr").count() == 3
    assert seen["csp"] == []


def test_ticking_two_jobs_in_history_opens_their_comparison(live, page, login, make_user):
    analyst = make_user("analyst")
    a = make_job(analyst, kind=JobKind.TABLE_APPLY, script="fit", parameters={"alpha": 0.1})
    finish_async(a, created=timezone.now() - timezone.timedelta(minutes=9), queue=1, oml=2, fetch=1)
    store_result(a, [{"K": "x", "V": 1}])
    b = make_job(analyst, kind=JobKind.TABLE_APPLY, script="fit", parameters={"alpha": 0.2}, parent=a)
    finish_async(b, created=timezone.now() - timezone.timedelta(minutes=5), queue=1, oml=2, fetch=1)
    store_result(b, [{"K": "x", "V": 2}])
    seen = watch(page)
    login(page, "analyst")

    page.goto(live.url("/jobs/"))
    page.check(f"tr#job-{a.uuid} input.compare-tick")
    page.check(f"tr#job-{b.uuid} input.compare-tick")
    page.click("#compare-form button[type=submit]")
    page.wait_for_url("**/jobs/compare/**")
    assert page.locator("#compare-request-table tr.differs th").all_inner_texts() == ["parameters.alpha"]
    assert "1 cell differs" in page.inner_text("#compare-result")

    page.goto(live.url(f"/jobs/{b.uuid}/"))
    page.click("#compare-with-parent")
    page.wait_for_url("**/jobs/compare/**")
    assert page.locator("#compare-cells tbody td.cell-b").inner_text() == "2"
    assert seen["csp"] == []
