"""Downloads of every result shape parse back to exactly the stored values; they stream, name the script and
the job, are audited, and answer 404 for a job the user may not see."""

import csv
import io
import json

import pytest
from openpyxl import load_workbook

from audit.models import AuditEntry
from jobs.services.jobs import result_read_all
from jobs.states import JobKind
from tests.results_support import parse_cell, png_base64, succeeded_job_with_result

RECORDS = [
    {"SEPAL_LENGTH": 5.1, "SPECIES": "setosa", "COUNT": 3, "OK": True, "NOTE": None},
    {"SEPAL_LENGTH": 4.9, "SPECIES": 'versi,color "quoted"\nsecond line', "COUNT": 7, "OK": False, "NOTE": "=1+2"},
    {"SEPAL_LENGTH": -0.25, "SPECIES": "ünïcødé ✓", "COUNT": 12345678901, "OK": True, "NOTE": "<b>x</b>"},
]
# RECORDS as a download holds them: the formula-like NOTE "=1+2" gets a leading "'" (test_results_formula_safety).
RECORD_ROWS = [
    [5.1, "setosa", 3, True, None],
    [4.9, 'versi,color "quoted"\nsecond line', 7, False, "'=1+2"],
    [-0.25, "ünïcødé ✓", 12345678901, True, "<b>x</b>"],
]
GROUPS = {
    "versicolor_8": {"SEPAL_LENGTH": {"0": 5.7}, "SPECIES": {"0": "versicolor"}, "COUNT": {"0": 5}},
    "setosa_1": {
        "SEPAL_LENGTH": {"0": 4.3, "1": 4.4},
        "SPECIES": {"0": "setosa", "1": "setosa"},
        "COUNT": {"0": 1, "1": 2},
    },
}
GROUP_ROWS = [
    ["versicolor_8", 5.7, "versicolor", 5],
    ["setosa_1", 4.3, "setosa", 1],
    ["setosa_1", 4.4, "setosa", 2],
]
INDEX = [7.2032449344, 4.3599490252, 5.5]
OBJECT = {"model": {"coef": [1.5, -2], "name": "lm"}, "n": 150, "ok": True}
OBJECT_ROWS = [["/model/coef/0", 1.5], ["/model/coef/1", -2], ["/model/name", "lm"], ["/n", 150], ["/ok", True]]


@pytest.fixture
def signed_in(client, analyst):
    client.force_login(analyst)
    return client


def download(client, job, fmt):
    response = client.get(f"/jobs/{job.uuid}/result.{fmt}")
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response, body


def csv_rows(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))


def xlsx_rows(body: bytes) -> list[list]:
    sheet = load_workbook(io.BytesIO(body), read_only=True).worksheets[0]
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    # A read-only sheet leaves out empty cells at the end of a row.
    width = max(len(row) for row in rows)
    return [row + [None] * (width - len(row)) for row in rows]


def typed(rows: list[list[str]]) -> list[list]:
    return [[parse_cell(cell) for cell in row] for row in rows]


@pytest.mark.django_db
def test_records_download_as_csv_with_exactly_the_stored_values(signed_in, analyst):
    job = succeeded_job_with_result(analyst, RECORDS, kind=JobKind.TABLE_APPLY)
    response, body = download(signed_in, job, "csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = csv_rows(body)
    assert rows[0] == ["SEPAL_LENGTH", "SPECIES", "COUNT", "OK", "NOTE"]
    assert typed(rows[1:]) == RECORD_ROWS


@pytest.mark.django_db
def test_records_download_as_xlsx_with_exactly_the_stored_values(signed_in, analyst):
    job = succeeded_job_with_result(analyst, RECORDS, kind=JobKind.TABLE_APPLY)
    response, body = download(signed_in, job, "xlsx")
    assert response["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    rows = xlsx_rows(body)
    assert rows[0] == ["SEPAL_LENGTH", "SPECIES", "COUNT", "OK", "NOTE"]
    assert rows[1:] == RECORD_ROWS


@pytest.mark.django_db
def test_json_download_is_the_body_exactly_as_received_across_chunks(signed_in, analyst, settings):
    settings.JOBS_RESULT_CHUNK_BYTES = 17
    job = succeeded_job_with_result(analyst, RECORDS)
    assert job.result.chunk_count > 3
    response, body = download(signed_in, job, "json")
    assert response.streaming
    assert body == result_read_all(job.result)
    assert json.loads(body) == {"result": RECORDS}
    assert response["Content-Length"] == str(len(body))


@pytest.mark.django_db
def test_group_apply_csv_has_the_group_label_as_a_column(signed_in, analyst):
    job = succeeded_job_with_result(analyst, GROUPS, kind=JobKind.GROUP_APPLY, script="group_count")
    _, body = download(signed_in, job, "csv")
    rows = csv_rows(body)
    assert rows[0] == ["group", "SEPAL_LENGTH", "SPECIES", "COUNT"]
    assert typed(rows[1:]) == GROUP_ROWS
    _, body = download(signed_in, job, "xlsx")
    assert xlsx_rows(body) == [["group", "SEPAL_LENGTH", "SPECIES", "COUNT"], *GROUP_ROWS]


@pytest.mark.django_db
def test_index_apply_downloads_carry_the_one_based_index(signed_in, analyst):
    job = succeeded_job_with_result(analyst, INDEX, kind=JobKind.INDEX_APPLY)
    _, body = download(signed_in, job, "csv")
    assert typed(csv_rows(body)) == [["index", "value"], [1, INDEX[0]], [2, INDEX[1]], [3, INDEX[2]]]
    _, body = download(signed_in, job, "xlsx")
    assert xlsx_rows(body) == [["index", "value"], [1, INDEX[0]], [2, INDEX[1]], [3, INDEX[2]]]


@pytest.mark.django_db
def test_object_downloads_list_each_leaf_by_its_path(signed_in, analyst):
    job = succeeded_job_with_result(analyst, OBJECT)
    _, body = download(signed_in, job, "csv")
    assert typed(csv_rows(body)) == [["path", "value"], *OBJECT_ROWS]
    _, body = download(signed_in, job, "xlsx")
    assert xlsx_rows(body) == [["path", "value"], *OBJECT_ROWS]


@pytest.mark.django_db
def test_scalar_downloads_hold_the_one_value(signed_in, analyst):
    job = succeeded_job_with_result(analyst, 42.5)
    _, body = download(signed_in, job, "csv")
    assert typed(csv_rows(body)) == [["value"], [42.5]]
    _, body = download(signed_in, job, "xlsx")
    assert xlsx_rows(body) == [["value"], [42.5]]
    _, body = download(signed_in, job, "json")
    assert json.loads(body) == {"result": 42.5}


@pytest.mark.django_db
def test_graphics_downloads_keep_image_data_and_id(signed_in, analyst):
    items = [{"IMAGE": png_base64(), "DATA": json.dumps([{"x": 1}]), "ID": 1}]
    job = succeeded_job_with_result(analyst, items)
    _, body = download(signed_in, job, "csv")
    assert typed(csv_rows(body)) == [["IMAGE", "DATA", "ID"], [items[0]["IMAGE"], items[0]["DATA"], 1]]
    _, body = download(signed_in, job, "xlsx")
    assert xlsx_rows(body) == [["IMAGE", "DATA", "ID"], [items[0]["IMAGE"], items[0]["DATA"], 1]]


@pytest.mark.django_db
def test_download_file_name_names_the_script_and_the_job(signed_in, analyst):
    job = succeeded_job_with_result(analyst, RECORDS, script="iris_summary")
    for fmt in ("json", "csv", "xlsx"):
        response, _ = download(signed_in, job, fmt)
        assert response["Content-Disposition"] == f'attachment; filename="iris_summary-{job.uuid}.{fmt}"'


@pytest.mark.django_db
def test_each_download_is_audited_with_its_format(signed_in, analyst):
    job = succeeded_job_with_result(analyst, RECORDS)
    for fmt in ("json", "csv", "xlsx"):
        download(signed_in, job, fmt)
    entries = AuditEntry.objects.filter(action="result_download", target_id=str(job.uuid))
    assert sorted(e.details["format"] for e in entries) == ["csv", "json", "xlsx"]
    assert {e.actor_username for e in entries} == {"analyst"}


@pytest.mark.django_db
def test_downloads_of_another_users_job_answer_404(client, analyst, make_user):
    job = succeeded_job_with_result(analyst, RECORDS)
    client.force_login(make_user("stranger"))
    for path in ("result.json", "result.csv", "result.xlsx", "result/", "result/raw/"):
        assert client.get(f"/jobs/{job.uuid}/{path}").status_code == 404
    assert not AuditEntry.objects.filter(action__startswith="result_").exists()


@pytest.mark.django_db
def test_a_body_that_is_not_json_downloads_as_lines_of_text(signed_in, analyst):
    job = succeeded_job_with_result(analyst, b"line one\nline, two\n")
    _, body = download(signed_in, job, "csv")
    assert csv_rows(body) == [["line"], ["line one"], ["line, two"]]
    _, body = download(signed_in, job, "json")
    assert body == b"line one\nline, two\n"
