"""Result downloads as Parquet, written with pyarrow alone (no numpy, pandas or temporary file), row group by
row group while the response is sent.

The rows and columns are those of the CSV download (jobs.results.bodies.iter_rows, the group label, index or path
leading). Parquet columns have one type, so a first pass over the body reads only each column's: booleans, whole
numbers (int64), numbers (float64, when whole and decimal numbers mix), or strings; a column holding anything
else (objects, lists, mixed kinds, integers beyond 64 bits) is written as the CSV's text of each value. Null
and missing cells are null. The schema is decided once, from that pass; a second pass writes the rows.

Memory holds one row group, whatever the result's size: a row group ends at JOBS_PARQUET_ROW_GROUP_CELLS cells
or sooner once its text reaches PARQUET_ROW_GROUP_TEXT_CHARS characters (a result of very long cells). pyarrow
allocates through the system allocator here rather than its default one, which keeps the pages of freed row
groups (about 40 MB more at the peak on bench/download.py's 100 MB result).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from jobs.results.bodies import LEAD_COLUMNS, MISSING, Source, cell_text, header_for, iter_rows, table_values

# A row group also ends once its text holds this many characters.
PARQUET_ROW_GROUP_TEXT_CHARS = 16 * 1024 * 1024
PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"

_INT64 = range(-(2**63), 2**63)
_NULL, _BOOL, _INT, _FLOAT, _TEXT, _OTHER = "null", "bool", "int", "float", "text", "other"


def _kind(value: Any) -> str:
    kind = type(value)
    if value is None or value is MISSING:
        return _NULL
    if kind is bool:
        return _BOOL
    if kind is int:
        return _INT if value in _INT64 else _OTHER
    if kind is float:
        return _FLOAT
    if kind is str:
        return _TEXT
    return _OTHER


def _column_type(kinds: set[str]) -> str:
    kinds = kinds - {_NULL}
    if kinds in ({_BOOL}, {_INT}, {_FLOAT}):
        return kinds.pop()
    if kinds == {_INT, _FLOAT}:
        return _FLOAT
    return _TEXT


def _as_is(value: Any) -> Any:
    return None if value is MISSING else value


def _as_float(value: Any) -> float | None:
    return None if value is None or value is MISSING else float(value)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {_BOOL: _as_is, _INT: _as_is, _FLOAT: _as_float}


class _Sink:
    """Where pyarrow writes the file: the bytes are taken away after each row group."""

    closed = False

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def write(self, data) -> int:
        piece = bytes(data)
        self._parts.append(piece)
        self._position += len(piece)
        return len(piece)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def parquet_chunks(source: Source, shape: str, row_group_cells: int) -> Iterator[bytes]:
    """The body as a Parquet file, in pieces of about a row group each, of at most `row_group_cells` cells
    (JOBS_PARQUET_ROW_GROUP_CELLS for downloads)."""
    # Imported here: only this download needs pyarrow, and the dashboard starts without loading it.
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds: dict[str, set[str]] = {}
    lead_kinds: set[str] = set()

    def observed() -> Iterator[tuple[Any, dict]]:
        for lead, cells in iter_rows(source, shape):
            lead_kinds.add(_kind(lead))
            for name, value in cells.items():
                kinds.setdefault(name, set()).add(_kind(value))
            yield lead, cells

    rows = observed()
    header = header_for(shape, rows)
    for _ in rows:  # header_for reads every row only for the shapes whose columns vary by row
        pass
    types = [_column_type(kinds.get(name, set())) for name in header.columns]
    if header.lead is not None:
        # Group labels and paths are text; an index is a whole number.
        types.insert(0, _INT if LEAD_COLUMNS.get(shape) == "index" and lead_kinds <= {_INT} else _TEXT)
    arrow_types = {_BOOL: pa.bool_(), _INT: pa.int64(), _FLOAT: pa.float64(), _TEXT: pa.string()}
    schema = pa.schema([pa.field(name, arrow_types[kind]) for name, kind in zip(header.names, types, strict=True)])

    pool = pa.system_memory_pool()
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema, memory_pool=pool)
    per_group = max(1, row_group_cells // max(1, len(types)))
    held = 0  # characters of text in the row group

    def as_text(value: Any) -> str | None:
        nonlocal held
        if value is None or value is MISSING:
            return None
        text = cell_text(value)
        held += len(text)
        return text

    converters = [as_text if kind == _TEXT else _CONVERTERS[kind] for kind in types]

    def row_group(columns: list[list[Any]]) -> bytes:
        arrays = [
            pa.array(column, type=field.type, memory_pool=pool) for column, field in zip(columns, schema, strict=True)
        ]
        writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
        return sink.take()

    columns: list[list[Any]] = [[] for _ in types]
    count = 0
    for lead, cells in iter_rows(source, shape):
        for column, convert, value in zip(columns, converters, table_values(header, lead, cells), strict=True):
            column.append(convert(value))
        count += 1
        if count == per_group or held >= PARQUET_ROW_GROUP_TEXT_CHARS:
            piece = row_group(columns)
            columns = [[] for _ in types]
            count = held = 0
            yield piece
    last = row_group(columns) if count else b""
    writer.close()
    yield last + sink.take()
