"""Result downloads: CSV produced row by row while it is sent, XLSX written to a temporary file.

Both read the stored body incrementally (jobs.results), so memory does not grow with a result's size. The
rows are those of jobs.results.iter_rows: group-apply rows carry the group label as their first column,
index-apply rows their 1-based index, object leaves their JSON Pointer path. Text a spreadsheet would run as a
formula, in cells and in column names alike, is made inert by jobs.spreadsheet.formula_safe; numbers stay
numbers.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from .results import MISSING, Source, cell_text, iter_rows, table_header, table_values
from .spreadsheet import formula_safe

CSV_FLUSH_BYTES = 64 * 1024
XLSX_MAX_ROWS = 1_048_576  # Excel's rows per sheet, header included
XLSX_MAX_TEXT = 32_767  # Excel's characters per cell
XLSX_MAX_EXACT_INT = 2**53  # Excel keeps numbers as doubles


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


def csv_chunks(source: Source, shape: str) -> Iterator[bytes]:
    """The body as CSV (UTF-8), in pieces of about CSV_FLUSH_BYTES. Null and missing cells are empty."""
    header = table_header(source, shape)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([formula_safe(name) for name in header.names])
    columns, has_lead, text = header.columns, header.lead is not None, csv_cell
    for lead, cells in iter_rows(source, shape):
        get = cells.get
        row = [text(get(name)) for name in columns]
        if has_lead:
            row.insert(0, text(lead))
        writer.writerow(row)
        if buffer.tell() >= CSV_FLUSH_BYTES:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


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


def xlsx_file(source: Source, shape: str) -> IO[bytes]:
    """The body as an XLSX workbook in an anonymous temporary file (removed when closed), positioned at 0.

    openpyxl's write-only mode streams rows to disk. Beyond Excel's row limit, rows continue on further
    sheets ("result 2", ...), each with the header.
    """
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
    workbook.save(out)
    out.seek(0)
    return out
