"""A result downloaded as Parquet is what pandas users load: read back by pandas, with each column's type."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow.parquet as pq
import pytest

from jobs.states import JobKind
from tests.results_support import succeeded_job_with_result


@pytest.mark.django_db
def test_pandas_reads_the_parquet_download_back_with_its_types(client, analyst, settings):
    # Several row groups, as a large result is written.
    settings.JOBS_PARQUET_ROW_GROUP_CELLS = 30
    rows = [
        {"ID": i, "NAME": f"row {i}", "VALUE": i / 4, "OK": i % 2 == 0, "MAYBE": None if i % 3 else i}
        for i in range(40)
    ]
    job = succeeded_job_with_result(analyst, rows, kind=JobKind.TABLE_APPLY)
    client.force_login(analyst)
    response = client.get(f"/jobs/{job.uuid}/result.parquet")
    assert response.streaming
    frame = pd.read_parquet(io.BytesIO(b"".join(response.streaming_content)))
    assert list(frame.columns) == ["ID", "NAME", "VALUE", "OK", "MAYBE"]
    assert str(frame["ID"].dtype) == "int64"
    assert str(frame["VALUE"].dtype) == "float64"
    assert str(frame["OK"].dtype) == "bool"
    assert frame["NAME"].tolist() == [f"row {i}" for i in range(40)]
    assert frame["VALUE"].tolist() == [i / 4 for i in range(40)]
    assert frame["MAYBE"].isna().sum() == 26
    assert frame["MAYBE"].dropna().astype(int).tolist() == list(range(0, 40, 3))


@pytest.mark.django_db
@pytest.mark.parametrize("row_group_cells", [7, 128 * 1024])
def test_pandas_reads_back_the_rows_of_the_json_download(client, analyst, settings, row_group_cells):
    """Every value of the JSON rows, read back by pandas: numbers, text (formula-like and non-ASCII included),
    booleans, nulls and missing keys as nulls, nested values as the CSV's JSON text, whatever the row groups."""
    import json

    from jobs.results.bodies import cell_text

    settings.JOBS_PARQUET_ROW_GROUP_CELLS = row_group_cells
    rows = [
        {"ID": 1, "NAME": "=1+1", "SCORE": 0.5, "OK": True, "NESTED": {"a": [1, None]}, "NOTE": None},
        {"ID": 2, "NAME": "@x", "SCORE": -2, "OK": False, "NESTED": [1, "two"], "EXTRA": "only here"},
        {"ID": 3, "NAME": "ünïcødé ✓", "SCORE": 1e-9, "OK": None, "NESTED": "plain", "NOTE": "+"},
        *({"ID": i, "NAME": "-", "SCORE": i / 8, "OK": i % 2 == 0, "NESTED": None} for i in range(4, 30)),
    ]
    job = succeeded_job_with_result(analyst, rows, kind=JobKind.TABLE_APPLY)
    client.force_login(analyst)
    as_json = json.loads(b"".join(client.get(f"/jobs/{job.uuid}/result.json").streaming_content))["result"]
    response = client.get(f"/jobs/{job.uuid}/result.parquet")
    data = b"".join(response.streaming_content)
    # A row a group (7 cells of 7 columns), or all 29 rows in one.
    assert pq.ParquetFile(io.BytesIO(data)).metadata.num_row_groups == (29 if row_group_cells == 7 else 1)
    frame = pd.read_parquet(io.BytesIO(data))
    columns = ["ID", "NAME", "SCORE", "OK", "NESTED", "NOTE", "EXTRA"]
    assert list(frame.columns) == columns
    read_back = [
        {name: None if not isinstance(value, str) and pd.isna(value) else value for name, value in row.items()}
        for row in frame.astype(object).to_dict("records")
    ]
    expected = [
        {name: cell_text(row[name]) if isinstance(row.get(name), dict | list) else row.get(name) for name in columns}
        for row in as_json
    ]
    assert read_back == expected
