"""A result downloaded as Parquet is what pandas users load: read back by pandas, with each column's type."""

from __future__ import annotations

import io

import pandas as pd
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
