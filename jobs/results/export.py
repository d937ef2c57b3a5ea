"""Result downloads: CSV produced row by row while it is sent, XLSX written to a temporary file, Parquet row
group by row group (jobs.results.parquet).

All read the stored body incrementally (jobs.results.bodies), so memory does not grow with a result's size. CSV and
XLSX read it once: their header comes from the columns recorded when the result was stored (a result stored
before they were recorded is read once more to find them; jobs.results.bodies.result_header). The
rows are those of jobs.results.bodies.iter_rows: group-apply rows carry the group label as their first column,
index-apply rows their 1-based index, object leaves their JSON Pointer path. Text a spreadsheet would run as a
formula, in cells and in column names alike, is made inert by omlpy_dashboard.spreadsheet.formula_safe; numbers stay
numbers. The pages and the API answer with the same download_response, so that both send the same bytes.
A result's CSV is written from its body once, on its first download, and stored as its rendition; later CSV
downloads send the stored bytes (jobs.results.renditions).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any
from zipfile import ZIP_DEFLATED, ZipFile, ZipInfo

from django.conf import settings
from django.http import FileResponse, HttpResponseBase, StreamingHttpResponse
from django.utils.http import content_disposition_header
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.writer.excel import ExcelWriter

from jobs.results.bodies import (
    MISSING,
    Header,
    Source,
    cell_text,
    iter_rows,
    result_header,
    result_source,
    shape_of,
    table_header,
    table_values,
)
from jobs.results.parquet import PARQUET_CONTENT_TYPE, parquet_chunks
from jobs.results.renditions import rendition_chunks
from omlpy_dashboard.spreadsheet import FORMULA_TRIGGERS, formula_safe

CSV_FLUSH_BYTES = 64 * 1024
XLSX_MAX_ROWS = 1_048_576  # Excel's rows per sheet, header included
XLSX_MAX_TEXT = 32_767  # Excel's characters per cell
XLSX_MAX_EXACT_INT = 2**53  # Excel keeps numbers as doubles
DOWNLOAD_FORMATS = ("json", "csv", "xlsx", "parquet")
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def download_filename(job, extension: str) -> str:
    """`<script>-<job uuid>.<ext>`, with anything but letters, digits, dot, dash and underscore replaced."""
    script = re.sub(r"[^A-Za-z0-9._-]+", "_", job.script_name).strip("._") or "result"
    return f"{script[:80]}-{job.uuid}.{extension}"


def csv_cell(value: Any) -> str:
    """One CSV cell: text made formula-safe; numbers, booleans, null and nested values as cell_text writes them
    (nested values are JSON text starting with `[` or `{`, which no spreadsheet runs)."""
    if type(value) is str:
        return formula_safe(value)
    return cell_text(value)


# Cells the csv module already writes as cell_text would: numbers as their repr, null as an empty cell.
_CSV_AS_IS = frozenset({int, float, type(None)})
# Rows handed to the csv writer at once: fewer calls from Python, and the output joined once per batch.
CSV_BATCH_ROWS = 1000


class _Pieces(list):
    """Where the csv writer puts its lines: a list, so that a batch is joined once rather than copied through
    a buffer line by line."""

    write = list.append


def csv_chunks(source: Source, shape: str, header: Header | None = None) -> Iterator[bytes]:
    """The body as CSV (UTF-8), in pieces of about CSV_FLUSH_BYTES. Null and missing cells are empty.

    One pass over the body when `header` is given (the columns recorded when the result was stored,
    jobs.results.bodies.result_header); without it, one more pass finds the columns first.
    """
    if header is None:
        header = table_header(source, shape)
    pieces = _Pieces()
    writer = csv.writer(pieces)
    writer.writerow([formula_safe(name) for name in header.names])
    columns, has_lead, text, as_is, triggers = (
        header.columns,
        header.lead is not None,
        csv_cell,
        _CSV_AS_IS,
        FORMULA_TRIGGERS,
    )
    batch: list[list[Any]] = []
    size = 0
    for lead, cells in iter_rows(source, shape):
        # csv_cell, with its two commonest cases (numbers and null as they are, text made formula-safe) inline:
        # this line runs once per cell of the result.
        row = [
            value
            if (kind := type(value)) in as_is
            else ("'" + value if value[:1] in triggers else value)
            if kind is str
            else text(value)
            for value in map(cells.get, columns)
        ]
        if has_lead:
            row.insert(0, lead if type(lead) in as_is else text(lead))
        batch.append(row)
        if len(batch) >= CSV_BATCH_ROWS:
            writer.writerows(batch)
            batch.clear()
            size += sum(map(len, pieces))
            if size >= CSV_FLUSH_BYTES:
                yield "".join(pieces).encode()
                pieces.clear()
                size = 0
    writer.writerows(batch)
    if pieces:
        yield "".join(pieces).encode()


def result_csv_chunks(result) -> Iterator[bytes]:
    """A stored result as CSV, written from its body (what its CSV rendition holds: jobs.results.renditions)."""
    source = result_source(result)
    shape = shape_of(result)
    yield from csv_chunks(source, shape, result_header(result, source, shape))


def _text_cell(sheet, text: str) -> WriteOnlyCell:
    # Characters an XLSX file cannot hold become U+FFFD; Excel holds at most 32,767 characters in a cell.
    text = ILLEGAL_CHARACTERS_RE.sub("\ufffd", text)[:XLSX_MAX_TEXT]
    cell = WriteOnlyCell(sheet, value=text)
    # openpyxl would store text starting with "=" as a formula: a cell of ours is always a string.
    cell.data_type = "s"
    return cell


def _xlsx_cell(sheet, value: Any):
    if value is None or value is MISSING:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) < XLSX_MAX_EXACT_INT:
        return value
    if isinstance(value, float):
        return value
    # Text as the CSV has it, so that a file saved again as CSV, or a cell edited, stays inert. An integer
    # too large for a double is written as its digits: a string cell, never run, and not prefixed.
    return _text_cell(sheet, csv_cell(value))


def _xlsx_header(sheet, names: list[str]) -> list[WriteOnlyCell]:
    return [_text_cell(sheet, formula_safe(name)) for name in names]


class _DatedZipFile(ZipFile):
    """A ZIP archive whose entries all carry one date, rather than the time they were written."""

    def __init__(self, file: IO[bytes], date_time: tuple[int, int, int, int, int, int]):
        super().__init__(file, "w", ZIP_DEFLATED, allowZip64=True)
        self.date_time = date_time

    def _entry(self, name: str) -> ZipInfo:
        entry = ZipInfo(name, date_time=self.date_time)
        entry.compress_type = self.compression
        entry.external_attr = 0o600 << 16
        return entry

    def writestr(self, zinfo_or_arcname, data, compress_type=None, compresslevel=None):
        if not isinstance(zinfo_or_arcname, ZipInfo):
            zinfo_or_arcname = self._entry(zinfo_or_arcname)
        super().writestr(zinfo_or_arcname, data, compress_type, compresslevel)

    def write(self, filename, arcname=None, compress_type=None, compresslevel=None):
        entry = self._entry(arcname or os.path.basename(filename))
        entry.file_size = os.path.getsize(filename)
        with open(filename, "rb") as source, self.open(entry, "w") as target:
            shutil.copyfileobj(source, target, 1024 * 1024)


def xlsx_file(source: Source, shape: str, stamp: datetime | None = None, header: Header | None = None) -> IO[bytes]:
    """The body as an XLSX workbook in an anonymous temporary file (removed when closed), positioned at 0.

    openpyxl's write-only mode streams rows to disk. Beyond Excel's row limit, rows continue on further
    sheets ("result 2", ...), each with the header. The workbook and its ZIP entries are dated `stamp` (when
    the result was stored), so that the same result always gives the same bytes, whoever downloads it.
    """
    if header is None:
        header = table_header(source, shape)
    workbook = Workbook(write_only=True)
    sheet = None
    sheets = 0
    rows_in_sheet = XLSX_MAX_ROWS
    for lead, cells in iter_rows(source, shape):
        if rows_in_sheet >= XLSX_MAX_ROWS:
            sheets += 1
            sheet = workbook.create_sheet("result" if sheets == 1 else f"result {sheets}")
            sheet.append(_xlsx_header(sheet, header.names))
            rows_in_sheet = 1
        sheet.append([_xlsx_cell(sheet, v) for v in table_values(header, lead, cells)])
        rows_in_sheet += 1
    if sheet is None:
        sheet = workbook.create_sheet("result")
        sheet.append(_xlsx_header(sheet, header.names))
    out = tempfile.TemporaryFile(suffix=".xlsx")  # noqa: SIM115 - handed to the response, which closes it
    when = (stamp or datetime(1980, 1, 1, tzinfo=UTC)).astimezone(UTC).replace(tzinfo=None, microsecond=0)
    workbook.properties.created = workbook.properties.modified = when
    # openpyxl's own save (save_workbook) dates the workbook and its entries now.
    ExcelWriter(workbook, _DatedZipFile(out, when.timetuple()[:6])).save()
    out.seek(0)
    return out


def download_response(job, result, fmt: str) -> HttpResponseBase:
    """`result` of `job` as an attachment in one of DOWNLOAD_FORMATS; JSON is the body exactly as received."""
    source = result_source(result)
    response: HttpResponseBase
    if fmt == "json":
        response = StreamingHttpResponse(source(), content_type=result.content_type or "application/json")
        response["Content-Length"] = str(result.size_bytes)
    elif fmt == "csv":
        chunks, size = rendition_chunks(result, "csv", lambda: result_csv_chunks(result))
        response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
        if size is not None:
            response["Content-Length"] = str(size)
    elif fmt == "xlsx":
        shape = shape_of(result)
        workbook = xlsx_file(source, shape, result.stored_at, result_header(result, source, shape))
        response = FileResponse(workbook, content_type=XLSX_CONTENT_TYPE)
    elif fmt == "parquet":
        chunks = parquet_chunks(source, shape_of(result), settings.JOBS_PARQUET_ROW_GROUP_CELLS)
        response = StreamingHttpResponse(chunks, content_type=PARQUET_CONTENT_TYPE)
    else:
        raise ValueError(f"unknown download format {fmt!r}")
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=download_filename(job, fmt)
    )
    return response
