"""Comparing two runs: the edited parameter, the timing of both, and the cells that differ."""

import pytest
from django.utils import timezone

from jobs.states import JobKind
from tests.results_support import finish_async, make_job, store_result, table_rows


@pytest.fixture
def signed_in(client, analyst):
    client.force_login(analyst)
    return client


def run(owner, alpha, rows, parent=None, **timing):
    job = make_job(owner, kind=JobKind.TABLE_APPLY, script="fit", parameters={"alpha": alpha, "n": 3}, parent=parent)
    finish_async(job, created=timezone.now() - timezone.timedelta(minutes=10), **timing)
    store_result(job, rows)
    return job


@pytest.mark.django_db
def test_compare_shows_the_one_edited_parameter_and_the_differing_cells(signed_in, analyst):
    a = run(analyst, 0.1, [{"K": "a", "V": 1.0}, {"K": "b", "V": 2.0}], queue=1, oml=10, fetch=0.5)
    b = run(analyst, 0.2, [{"K": "a", "V": 1.0}, {"K": "b", "V": 2.5}], parent=a, queue=2, oml=12, fetch=0.5)
    html = signed_in.get(f"/jobs/compare/?a={a.uuid}&b={b.uuid}").content.decode()

    differing = [row for row in table_rows(html, "compare-request-table") if row[-1] == "differs"]
    assert differing == [["parameters.alpha", "0.1", "0.2", "differs"]]
    assert table_rows(html, "compare-cells") == [["Row", "Column", "A", "B"], ["2", "V", "2.0", "2.5"]]
    assert "1 cell differs" in html
    timing = {row[0]: row[1:] for row in table_rows(html, "compare-timing-table")}
    assert timing["Queue wait"] == ["1.00 s", "2.00 s", "1.000 s"]
    assert timing["OML time"] == ["10.0 s", "12.0 s", "2.000 s"]


@pytest.mark.django_db
def test_compare_reports_row_counts_and_columns_of_both_results(signed_in, analyst):
    a = run(analyst, 0.1, [{"K": "a", "V": 1}], queue=1, oml=1, fetch=1)
    b = run(analyst, 0.1, [{"K": "a", "W": 1}, {"K": "b", "W": 2}], queue=1, oml=1, fetch=1)
    html = signed_in.get(f"/jobs/compare/?a={a.uuid}&b={b.uuid}").content.decode()
    assert ["Rows", "1", "2"] in table_rows(html, "compare-result-table")
    assert 'Only in A: <span class="mono">V</span>' in html
    assert 'Only in B: <span class="mono">W</span>' in html


@pytest.mark.django_db
def test_identical_runs_compare_as_the_same(signed_in, analyst):
    a = run(analyst, 0.1, [{"K": "a", "V": 1}], queue=1, oml=1, fetch=1)
    b = run(analyst, 0.1, [{"K": "a", "V": 1}], queue=1, oml=1, fetch=1)
    html = signed_in.get(f"/jobs/compare/?pick={a.uuid}&pick={b.uuid}").content.decode()
    assert "The results are the same" in html


@pytest.mark.django_db
def test_comparing_with_a_job_the_user_may_not_see_answers_404(client, analyst, make_user):
    a = run(analyst, 0.1, [{"K": "a"}], queue=1, oml=1, fetch=1)
    other = make_user("other")
    b = run(other, 0.1, [{"K": "a"}], queue=1, oml=1, fetch=1)
    client.force_login(analyst)
    assert client.get(f"/jobs/compare/?a={a.uuid}&b={b.uuid}").status_code == 404
    assert client.get(f"/jobs/compare/?a={a.uuid}&b=nonsense").status_code == 404


@pytest.mark.django_db
def test_the_compare_link_of_a_rerun_points_at_its_parent(analyst):
    from django.template.loader import render_to_string

    a = run(analyst, 0.1, [{"K": "a"}], queue=1, oml=1, fetch=1)
    b = run(analyst, 0.2, [{"K": "a"}], parent=a, queue=1, oml=1, fetch=1)
    assert f"/jobs/compare/?a={a.uuid}&amp;b={b.uuid}" in render_to_string("jobs/_compare_link.html", {"job": b})
    assert render_to_string("jobs/_compare_link.html", {"job": a}).strip() == ""
