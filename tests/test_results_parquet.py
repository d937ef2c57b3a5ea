"""Result downloads as Parquet: the rows and columns of the CSV download with a type per column, written row
group by row group while the response streams, by pyarrow alone (the dashboard image has no numpy or pandas)."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from jobs.states import JobKind
from tests.production import BLOCKER_DIR
from tests.results_support import parse_cell, succeeded_job_with_result
from tests.stack import ROOT

RECORDS = [
    {"SEPAL_LENGTH": 5.1, "SPECIES": "setosa", "COUNT": 3, "OK": True, "NOTE": None},
    {"SEPAL_LENGTH": 4.9, "SPECIES": 'versi,color "q"', "COUNT": 7, "OK": False, "NOTE": "=1+2", "EXTRA": [1, 2]},
    {"SEPAL_LENGTH": -1, "SPECIES": "ünïcødé", "COUNT": 12345678901, "OK": True, "NOTE": "x"},
]
GROUPS = {
    "versicolor_8": {"SEPAL_LENGTH": {"0": 5.7}, "SPECIES": {"0": "versicolor"}, "COUNT": {"0": 5}},
    "setosa_1": {
        "SEPAL_LENGTH": {"0": 4.3, "1": 4.4},
        "SPECIES": {"0": "setosa", "1": "setosa"},
        "COUNT": {"0": 1, "1": 2},
    },
}
INDEX = [7.2032449344, 4.3599490252, 5]
OBJECT = {"model": {"coef": [1.5, -2], "name": "lm"}, "n": 150, "ok": True}


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def without_formula_guard(cell: str) -> str:
    return cell[1:] if cell[:1] == "'" and cell[1:2] in ("=", "+", "-", "@", "\t", "\r") else cell


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "kind", "types"),
    [
        (RECORDS, JobKind.TABLE_APPLY, ["double", "string", "int64", "bool", "string", "string"]),
        (GROUPS, JobKind.GROUP_APPLY, ["string", "double", "string", "int64"]),
        (INDEX, JobKind.INDEX_APPLY, ["int64", "double"]),
        (OBJECT, JobKind.DO_EVAL, ["string", "string"]),
    ],
)
def test_parquet_holds_the_rows_and_columns_of_the_csv_with_a_type_per_column(client, analyst, body, kind, types):
    job = succeeded_job_with_result(analyst, body, kind=kind)
    client.force_login(analyst)
    table = pq.read_table(io.BytesIO(_body(client.get(f"/jobs/{job.uuid}/result.parquet"))))
    rows = list(csv.reader(io.StringIO(_body(client.get(f"/jobs/{job.uuid}/result.csv")).decode(), newline="")))
    assert table.column_names == rows[0]
    assert [str(field.type) for field in table.schema] == types
    # Parquet holds the values themselves: the CSV's guard against spreadsheet formulas is taken off first.
    as_csv = [[parse_cell(without_formula_guard(cell)) for cell in row] for row in rows[1:]]
    # The CSV's text of each value, typed back, is the Parquet value (an object column holds the CSV's text).
    assert [[parse_cell(v) if isinstance(v, str) else v for v in row.values()] for row in table.to_pylist()] == as_csv


@pytest.mark.django_db
def test_parquet_is_written_row_group_by_row_group_as_it_streams(client, analyst, settings):
    settings.JOBS_PARQUET_ROW_GROUP_CELLS = 12
    rows = [{"ID": i, "NAME": f"row {i}", "VALUE": i / 4} for i in range(25)]
    job = succeeded_job_with_result(analyst, rows, kind=JobKind.TABLE_APPLY)
    client.force_login(analyst)
    response = client.get(f"/jobs/{job.uuid}/result.parquet")
    assert response.streaming
    pieces = list(response.streaming_content)
    parquet = pq.ParquetFile(io.BytesIO(b"".join(pieces)))
    assert parquet.metadata.num_row_groups == 7  # 4 rows (12 cells of 3 columns) a group
    # Each full group is sent as soon as it is written; the last one goes with the file's footer.
    assert len(pieces) == parquet.metadata.num_row_groups
    assert parquet.read().to_pylist() == rows


def test_parquet_is_written_without_numpy_or_pandas():
    """As in the dashboard image: the scientific stack made absent (tests/support/without_science)."""
    script = (
        "import json, sys\n"
        "from jobs.results.bodies import bytes_source\n"
        "from jobs.results.parquet import parquet_chunks\n"
        "body = json.dumps({'result': [{'A': i, 'B': str(i)} for i in range(100)]}).encode()\n"
        "sys.stdout.buffer.write(b''.join(parquet_chunks(bytes_source(body), 'records', 1000)))\n"
        "assert 'numpy' not in sys.modules and 'pandas' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={"PYTHONPATH": f"{BLOCKER_DIR}:{ROOT}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert pq.read_table(io.BytesIO(done.stdout)).to_pylist() == [{"A": i, "B": str(i)} for i in range(100)]


@pytest.mark.django_db
def test_the_result_page_offers_the_parquet_download(client, analyst):
    job = succeeded_job_with_result(analyst, RECORDS, kind=JobKind.TABLE_APPLY)
    client.force_login(analyst)
    page = client.get(f"/jobs/{job.uuid}/result/").content.decode()
    assert f'href="/jobs/{job.uuid}/result.parquet"' in page
