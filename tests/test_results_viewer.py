"""The result page shows every shape untruncated, a page at a time, and renders script output inert."""

import base64
import json

import pytest

from audit.models import AuditEntry
from jobs.states import JobKind
from tests.results_support import make_job, png_base64, succeeded_job_with_result, table_rows

GROUPS = {
    "versicolor_8": {"SEPAL_LENGTH": {"0": 5.7}, "SPECIES": {"0": "versicolor"}, "COUNT": {"0": 5}},
    "setosa_1": {
        "SEPAL_LENGTH": {"0": 4.3, "1": 4.4},
        "SPECIES": {"0": "setosa", "1": "setosa"},
        "COUNT": {"0": 1, "1": 2},
    },
}


@pytest.fixture
def signed_in(client, analyst):
    client.force_login(analyst)
    return client


def page(client, job, query: str = "") -> str:
    response = client.get(f"/jobs/{job.uuid}/result/{query}")
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db
def test_row_records_show_as_a_table_with_every_cell(signed_in, analyst):
    records = [{"A": 1, "B": "x", "C": None}, {"A": 2.5, "B": "y", "D": True}]
    job = succeeded_job_with_result(analyst, records, kind=JobKind.TABLE_APPLY)
    rows = table_rows(page(signed_in, job), "result-table")
    assert rows == [["#", "A", "B", "C", "D"], ["1", "1", "x", "null", ""], ["2", "2.5", "y", "", "true"]]


@pytest.mark.django_db
def test_large_results_are_paginated_without_losing_a_row(signed_in, analyst):
    records = [{"N": i} for i in range(450)]
    job = succeeded_job_with_result(analyst, records)
    seen = []
    for number in (1, 2, 3):
        html = page(signed_in, job, f"?page={number}")
        seen += [int(row[1]) for row in table_rows(html, "result-table")[1:]]
        assert ('rel="next"' in html) == (number < 3)
    assert seen == list(range(450))


@pytest.mark.django_db
def test_group_apply_shows_a_section_per_group_and_a_combined_table(signed_in, analyst):
    job = succeeded_job_with_result(analyst, GROUPS, kind=JobKind.GROUP_APPLY, script="group_count")
    html = page(signed_in, job)
    assert 'Group <span class="mono group-label">versicolor_8</span>' in html
    assert 'Group <span class="mono group-label">setosa_1</span>' in html
    assert table_rows(html, "result-table") == [
        ["#", "group", "SEPAL_LENGTH", "SPECIES", "COUNT"],
        ["1", "versicolor_8", "5.7", "versicolor", "5"],
        ["2", "setosa_1", "4.3", "setosa", "1"],
        ["3", "setosa_1", "4.4", "setosa", "2"],
    ]


@pytest.mark.django_db
def test_index_apply_shows_values_by_one_based_index(signed_in, analyst):
    job = succeeded_job_with_result(analyst, [7.2032449344, 4.3599490252, 5.5], kind=JobKind.INDEX_APPLY)
    assert table_rows(page(signed_in, job), "result-table") == [
        ["index", "value"],
        ["1", "7.2032449344"],
        ["2", "4.3599490252"],
        ["3", "5.5"],
    ]


@pytest.mark.django_db
def test_dict_results_show_as_a_collapsible_tree(signed_in, analyst):
    job = succeeded_job_with_result(analyst, {"model": {"coef": [1.5, -2], "name": "lm"}, "n": 150})
    html = page(signed_in, job)
    assert '<details class="tree-node" open><summary><span class="tree-key">model</span>' in html
    assert '<span class="tree-key">name</span>: <span class="tree-string">lm</span>' in html
    assert '<span class="tree-key">n</span>: <span class="tree-number">150</span>' in html
    assert "[ 2 items ]" in html


@pytest.mark.django_db
def test_a_scalar_result_shows_its_value(signed_in, analyst):
    job = succeeded_job_with_result(analyst, "forty-two")
    assert '<pre class="code wrap result-scalar">forty-two</pre>' in page(signed_in, job)


@pytest.mark.django_db
def test_graphics_show_each_png_as_a_picture_beside_its_data(signed_in, analyst):
    image = png_base64()
    items = [
        {"IMAGE": image, "DATA": json.dumps({"mean": 5.84}), "ID": 1},
        {"IMAGE": base64.b64encode(b"<svg onload=alert(1)>").decode(), "DATA": "not json <b>", "ID": 2},
    ]
    job = succeeded_job_with_result(analyst, items)
    html = page(signed_in, job)
    assert f'<img src="data:image/png;base64,{image}"' in html
    assert html.count("<img ") == 1
    assert "IMAGE 2 is not a PNG picture" in html
    assert '<span class="tree-key">mean</span>: <span class="tree-number">5.84</span>' in html
    assert "not json &lt;b&gt;" in html


@pytest.mark.django_db
def test_html_in_cells_and_keys_is_shown_as_text(signed_in, analyst):
    evil = "<script>alert(1)</script>"
    job = succeeded_job_with_result(analyst, [{evil: evil, "B": {evil: [evil]}}])
    html = page(signed_in, job)
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert table_rows(html, "result-table")[0][1] == evil


@pytest.mark.django_db
def test_the_raw_view_shows_the_body_as_received(signed_in, analyst):
    job = succeeded_job_with_result(analyst, b'{"result": ["<i>", "\xc3\xa9"]}')
    response = signed_in.get(f"/jobs/{job.uuid}/result/raw/")
    assert "{&quot;result&quot;: [&quot;&lt;i&gt;&quot;, &quot;é&quot;]}" in response.content.decode()


@pytest.mark.django_db
def test_a_job_without_a_result_says_so(signed_in, analyst):
    job = make_job(analyst)
    assert "No result stored" in page(signed_in, job)
    assert signed_in.get(f"/jobs/{job.uuid}/result.csv").status_code == 404


@pytest.mark.django_db
def test_viewing_a_result_is_audited(signed_in, analyst):
    job = succeeded_job_with_result(analyst, [1, 2])
    page(signed_in, job)
    signed_in.get(f"/jobs/{job.uuid}/result/raw/")
    formats = sorted(
        e.details["format"] for e in AuditEntry.objects.filter(action="result_view", target_id=str(job.uuid))
    )
    assert formats == ["html", "raw"]
