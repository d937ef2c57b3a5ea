"""Result bodies: their shape, their row count, and their rows, read incrementally.

OML answers `{"result": <value>}` (OML_API.md). A body is classified by its value:

- `records`: a list of objects (a DataFrame from do-eval, table-apply, row-apply): a row per object.
- `graphics`: a list of `{"IMAGE", "DATA", "ID"}` objects (graphicsFlag): a row per image, like records.
- `groups`: an object of group label -> `DataFrame.to_dict()` (`{"COL": {"0": v}}`) or a list of records
  (group-apply): a row per row of each group, led by a `group` column holding the label.
- `list`: any other list (index-apply): a row per item, led by its 1-based `index`.
- `object`: any other object (dict returns, nested JSON): a row per leaf, led by its JSON Pointer `path`.
- `scalar`: a string, number, boolean or null: one row.
- `text`: a body that is not JSON: a row per line.

A body without a top-level `"result"` key is classified as a whole. Everything here reads a body through a
*source*: a callable that opens a fresh iterator of byte chunks (the stored chunks of a JobResult, or a bytes
object), so that a body can be read more than once and never needs to be in memory whole. JSON is parsed
with ijson (its C backend, yajl2_c) one item at a time; only one group of a group-apply result is held at
once (its columns come one after another, so its rows exist only when the whole group has been read). One
pass when a result is stored finds its shape, rows and columns (describe_body), so that a download reads
the body once.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import io
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import ijson

Source = Callable[[], Iterable[bytes]]

RECORDS = "records"
GRAPHICS = "graphics"
GROUPS = "groups"
LIST = "list"
OBJECT = "object"
SCALAR = "scalar"
TEXT = "text"
TABLE_SHAPES = frozenset({RECORDS, GRAPHICS, GROUPS, LIST})

# The leading column a shape's rows carry in tables and downloads (records have none: only their own columns).
LEAD_COLUMNS = {GROUPS: "group", LIST: "index", OBJECT: "path"}

# ijson reads this many bytes at a time.
_READ_SIZE = 64 * 1024
# Nesting deeper than this is shown as JSON text rather than as a tree (and keeps recursion bounded).
TREE_MAX_DEPTH = 32


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


# --- Sources ------------------------------------------------------------------------------------


def bytes_source(body: bytes) -> Source:
    return lambda: (body,)


def result_source(result) -> Source:
    """The stored chunks of a JobResult, read again from the database each time the source is opened."""
    from jobs.services.jobs import result_iter_chunks

    return lambda: result_iter_chunks(result)


class ChunkFile(io.RawIOBase):
    """A read-only file over an iterator of byte chunks, holding one chunk at a time."""

    def __init__(self, chunks: Iterable[bytes]):
        super().__init__()
        self._chunks = iter(chunks)
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = memoryview(chunk)
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join([bytes(self._buffer), *self._chunks])
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._buffer = memoryview(chunk)
        piece = bytes(self._buffer[:size])
        self._buffer = self._buffer[size:]
        return piece


def _open(source: Source) -> ChunkFile:
    return ChunkFile(source())


# --- Shape ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where a body's value sits and what kind of JSON value it is."""

    kind: str  # "array", "map", "scalar" or "invalid"
    prefix: str  # the ijson prefix of the value: "result" or "" (a body without a result key)

    def items_prefix(self) -> str:
        return f"{self.prefix}.item" if self.prefix else "item"


_VALUE_EVENTS = {"start_array": "array", "start_map": "map"}


def _layout(source: Source) -> Layout:
    """Read the first events of a body: is its value under "result", and is it a list, an object or a scalar?"""
    events = ijson.parse(_open(source), buf_size=_READ_SIZE)
    try:
        first = next(events, None)
        if first is None:
            return Layout("invalid", "")
        _, event, _ = first
        if event != "start_map":
            return Layout(_VALUE_EVENTS.get(event, "scalar"), "")
        _, event, value = next(events)
        if event == "map_key" and value == "result":
            _, event, _ = next(events)
            return Layout(_VALUE_EVENTS.get(event, "scalar"), "result")
        return Layout("map", "")
    except (ijson.JSONError, StopIteration, UnicodeDecodeError):
        return Layout("invalid", "")


def frame_rows(value: Any) -> list[dict] | None:
    """The rows of one group: a `DataFrame.to_dict()` object or a list of records; None if it is neither."""
    if isinstance(value, list):
        return value if value and all(isinstance(row, dict) for row in value) else None
    if not isinstance(value, dict) or not value:
        return None
    columns = list(value.values())
    if not all(isinstance(column, dict) for column in columns):
        return None
    index = list(columns[0])
    keys = set(index)
    if any(set(column) != keys for column in columns[1:]):
        return None
    return [{name: column[i] for name, column in value.items()} for i in index]


def _is_graphic(item: Any) -> bool:
    return isinstance(item, dict) and "IMAGE" in item and "DATA" in item


def count_leaves(value: Any, depth: int = 0) -> int:
    if isinstance(value, dict) and value and depth < TREE_MAX_DEPTH:
        return sum(count_leaves(v, depth + 1) for v in value.values())
    if isinstance(value, list) and value and depth < TREE_MAX_DEPTH:
        return sum(count_leaves(v, depth + 1) for v in value)
    return 1


# Column sets wider than this are not recorded with a result (a download then finds them by reading the body).
RECORDED_COLUMNS_MAX = 4096


@dataclass(frozen=True)
class Description:
    """What one pass over a body finds: its shape, its number of rows (None for a body that is not JSON), and
    the union of its rows' column names in order of first appearance (None when wider than
    RECORDED_COLUMNS_MAX), so that a download need not read the body once more to write its header."""

    shape: str
    rows: int | None
    columns: list[str] | None


FIXED_COLUMNS = {TEXT: ["line"], LIST: ["value"], OBJECT: ["value"], SCALAR: ["value"]}


def _described(shape: str, rows: int | None, columns: dict[str, None] | None = None) -> Description:
    names = list(FIXED_COLUMNS[shape]) if shape in FIXED_COLUMNS else list(columns or {})
    return Description(shape, rows, names if len(names) <= RECORDED_COLUMNS_MAX else None)


def _describe(source: Source) -> Description:
    layout = _layout(source)
    if layout.kind == "invalid":
        return _described(TEXT, None)
    if layout.kind == "scalar":
        # Parse it fully: a scalar followed by garbage is not JSON.
        for _ in ijson.items(_open(source), layout.prefix, use_float=True, buf_size=_READ_SIZE):
            pass
        return _described(SCALAR, 1)
    if layout.kind == "array":
        count, all_records, all_graphics = 0, True, True
        columns: dict[str, None] = {}
        for item in ijson.items(_open(source), layout.items_prefix(), use_float=True, buf_size=_READ_SIZE):
            count += 1
            if all_records and not isinstance(item, dict):
                all_records = all_graphics = False
            elif all_graphics and not _is_graphic(item):
                all_graphics = False
            if all_records:
                _union(columns, (item,))
        if count == 0:
            return _described(LIST, 0)
        if all_graphics:
            return _described(GRAPHICS, count, columns)
        return _described(RECORDS, count, columns) if all_records else _described(LIST, count)
    group_rows: int | None = 0
    group_columns: dict[str, None] = {}
    leaves = 0
    for _, value in ijson.kvitems(_open(source), layout.prefix, use_float=True, buf_size=_READ_SIZE):
        leaves += count_leaves(value, 1)
        if group_rows is not None:
            rows = frame_rows(value)
            if rows is None:
                group_rows = None
            else:
                group_rows += len(rows)
                _union(group_columns, rows)
    if group_rows is not None and leaves:
        return _described(GROUPS, group_rows, group_columns)
    return _described(OBJECT, leaves)


def _as_source(body: bytes | Iterable[bytes] | Source) -> Source:
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes_source(bytes(body))
    if callable(body):
        return body
    chunks = list(body) if not isinstance(body, list | tuple) else body
    return lambda: chunks


def describe_body(body: bytes | Iterable[bytes] | Source) -> Description:
    """Shape, row count and columns of a result body, in one pass over it.

    Takes the body as bytes, an iterable of byte chunks that can be iterated more than once (a list), or a
    source (a callable opening a fresh chunk iterator). Never raises on a bad body: anything that is not
    JSON is text, without a row count.
    """
    source = _as_source(body)
    try:
        return _describe(source)
    except (ijson.JSONError, UnicodeDecodeError, ValueError, RecursionError):
        return _described(TEXT, None)


def describe_result(body: bytes | Iterable[bytes] | Source) -> tuple[str, int | None]:
    """The shape of a result body and its number of rows (None for a body that is not JSON): describe_body
    without the columns."""
    description = describe_body(body)
    return description.shape, description.rows


def peek_shape(source: Source) -> str:
    """A body's shape judged from its first item or group only: for bodies stored without a shape, so that a
    page need not read a large body through first. Rows that do not fit the shape still come out (iter_rows)."""
    try:
        layout = _layout(source)
        if layout.kind == "invalid":
            return TEXT
        if layout.kind == "scalar":
            return describe_result(source)[0]
        if layout.kind == "array":
            items = ijson.items(_open(source), layout.items_prefix(), use_float=True, buf_size=_READ_SIZE)
            first = next(iter(items), MISSING)
            if _is_graphic(first):
                return GRAPHICS
            return RECORDS if isinstance(first, dict) else LIST
        entries = ijson.kvitems(_open(source), layout.prefix, use_float=True, buf_size=_READ_SIZE)
        first = next(iter(entries), None)
        return GROUPS if first is not None and frame_rows(first[1]) is not None else OBJECT
    except (ijson.JSONError, UnicodeDecodeError, ValueError):
        return TEXT


def shape_of(result) -> str:
    """A stored result's shape, as recorded when stored, or judged from its first item when it was not."""
    return result.shape or peek_shape(result_source(result))


# --- Rows -----------------------------------------------------------------------------------------


def json_pointer(parts: Iterable[Any]) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def _leaves(value: Any, path: tuple, depth: int) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and value and depth < TREE_MAX_DEPTH:
        for key, child in value.items():
            yield from _leaves(child, (*path, key), depth + 1)
    elif isinstance(value, list) and value and depth < TREE_MAX_DEPTH:
        for i, child in enumerate(value):
            yield from _leaves(child, (*path, i), depth + 1)
    else:
        yield json_pointer(path), value


def _text_lines(source: Source) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    for chunk in source():
        pending += decoder.decode(chunk)
        *lines, pending = pending.split("\n")
        yield from (line.rstrip("\r") for line in lines)
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending.rstrip("\r")


def iter_rows(source: Source, shape: str) -> Iterator[tuple[Any, dict]]:
    """Each row of a body as (lead, cells): lead is the group label, 1-based index, JSON Pointer path or row
    number (records, graphics, text; not a column of theirs), and cells maps column names to values."""
    if shape == TEXT:
        for n, line in enumerate(_text_lines(source), start=1):
            yield n, {"line": line}
        return
    layout = _layout(source)
    if shape in (RECORDS, GRAPHICS, LIST):
        items = ijson.items(_open(source), layout.items_prefix(), use_float=True, buf_size=_READ_SIZE)
        for n, item in enumerate(items, start=1):
            if shape == LIST or not isinstance(item, dict):
                yield n, {"value": item}
            else:
                yield n, item
    elif shape == GROUPS:
        for label, value in ijson.kvitems(_open(source), layout.prefix, use_float=True, buf_size=_READ_SIZE):
            rows = frame_rows(value)
            if rows is None:
                # A group that is not a frame (a body judged by its first group only) is still shown.
                yield label, {"value": value}
            else:
                yield from ((label, row) for row in rows)
    elif shape == OBJECT:
        for key, value in ijson.kvitems(_open(source), layout.prefix, use_float=True, buf_size=_READ_SIZE):
            for path, leaf in _leaves(value, (key,), 1):
                yield path, {"value": leaf}
    else:
        for value in ijson.items(_open(source), layout.prefix, use_float=True, buf_size=_READ_SIZE):
            yield None, {"value": value}


def _union(columns: dict[str, None], rows: Iterable[dict]) -> dict[str, None]:
    for row in rows:
        if row.keys() <= columns.keys():
            continue
        for name in row:
            if name not in columns:
                columns[name] = None
    return columns


def unique_name(wanted: str, taken: Iterable[str]) -> str:
    taken = set(taken)
    name = wanted
    while name in taken:
        name = f"_{name}"
    return name


@dataclass
class Header:
    lead: str | None  # the name of the leading column, or None when rows have none
    columns: list[str]

    @property
    def names(self) -> list[str]:
        return ([self.lead] if self.lead else []) + self.columns


def header_of(shape: str, columns: Iterable[str]) -> Header:
    """The header of rows of `shape` whose columns are `columns`: the shape's lead column, named apart from
    them, then the columns."""
    columns = list(columns)
    lead = LEAD_COLUMNS.get(shape)
    return Header(lead=unique_name(lead, columns) if lead else None, columns=columns)


def header_for(shape: str, rows: Iterable[tuple[Any, dict]]) -> Header:
    """The columns of `rows` (their union, in order of first appearance) and the shape's lead column."""
    if shape in FIXED_COLUMNS:
        return header_of(shape, FIXED_COLUMNS[shape])
    return header_of(shape, _union({}, (cells for _, cells in rows)))


def table_header(source: Source, shape: str) -> Header:
    """The header of a whole body: one extra pass over it for shapes whose columns vary by row."""
    rows = iter_rows(source, shape) if shape in (RECORDS, GRAPHICS, GROUPS) else ()
    return header_for(shape, rows)


def result_header(result, source: Source, shape: str) -> Header:
    """A stored result's header: from the columns recorded when it was stored, or, for a result stored
    without them (before they were recorded, or too wide to record), from one extra pass over its body."""
    if result.columns is not None and result.shape == shape:
        return header_of(shape, result.columns)
    return table_header(source, shape)


def table_values(header: Header, lead: Any, cells: dict) -> list[Any]:
    values = [cells.get(name, MISSING) for name in header.columns]
    return [lead, *values] if header.lead else values


def cell_text(value: Any) -> str:
    """A value as one CSV cell: strings as they are, numbers and booleans as JSON writes them, null and a
    missing key as an empty cell, lists and objects as compact JSON."""
    kind = type(value)
    if kind is str:
        return value
    if value is None or value is MISSING:
        return ""
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)
    if kind is float:
        # What json.dumps writes for a finite float (the parser never yields NaN or infinity).
        return float.__repr__(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --- Pages of the viewer ----------------------------------------------------------------------------


@dataclass
class TreeNode:
    key: str
    kind: str  # "object", "array" or "scalar"
    text: str = ""  # a scalar's text
    type: str = ""  # string, number, boolean, null, json (too deep)
    children: list[TreeNode] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.children)


def tree(value: Any, key: str = "", depth: int = 0) -> TreeNode:
    """A JSON value as a tree for nested <details>; nesting beyond TREE_MAX_DEPTH is shown as JSON text."""
    if isinstance(value, dict) and depth < TREE_MAX_DEPTH:
        return TreeNode(key, "object", children=[tree(v, str(k), depth + 1) for k, v in value.items()])
    if isinstance(value, list) and depth < TREE_MAX_DEPTH:
        return TreeNode(key, "array", children=[tree(v, str(i), depth + 1) for i, v in enumerate(value)])
    if value is None:
        return TreeNode(key, "scalar", text="null", type="null")
    if isinstance(value, bool):
        return TreeNode(key, "scalar", text=cell_text(value), type="boolean")
    if isinstance(value, int | float):
        return TreeNode(key, "scalar", text=cell_text(value), type="number")
    if isinstance(value, str):
        return TreeNode(key, "scalar", text=value, type="string")
    return TreeNode(key, "scalar", text=cell_text(value), type="json")


@dataclass
class Cell:
    text: str = ""
    node: TreeNode | None = None  # nested values render as a tree
    missing: bool = False
    null: bool = False


def view_cell(value: Any) -> Cell:
    if value is MISSING:
        return Cell(missing=True)
    if value is None:
        return Cell(text="null", null=True)
    if isinstance(value, dict | list):
        return Cell(node=tree(value))
    return Cell(text=cell_text(value))


@dataclass
class RowPage:
    header: Header
    rows: list[tuple[Any, list[Cell]]]  # (lead or row number, cells aligned with header.columns)
    number: int
    has_next: bool
    first_row: int  # 1-based number of the first row on the page

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    def sections(self) -> list[tuple[Any, list[list[Cell]]]]:
        """The page's rows by group label, in order (group-apply)."""
        return [(label, [cells for _, cells in rows]) for label, rows in itertools.groupby(self.rows, lambda r: r[0])]


def row_page(source: Source, shape: str, number: int, per_page: int) -> RowPage:
    """One page of a body's rows. Earlier rows are parsed and dropped, never held."""
    number = max(1, number)
    start = (number - 1) * per_page
    taken = list(itertools.islice(iter_rows(source, shape), start, start + per_page + 1))
    has_next = len(taken) > per_page
    taken = taken[:per_page]
    header = header_for(shape, taken)
    rows = [(lead, [view_cell(cells.get(c, MISSING)) for c in header.columns]) for lead, cells in taken]
    return RowPage(header=header, rows=rows, number=number, has_next=has_next, first_row=start + 1)


@dataclass
class TreePage:
    nodes: list[TreeNode]
    number: int
    has_next: bool
    is_root_scalar: bool = False

    @property
    def has_previous(self) -> bool:
        return self.number > 1


def tree_page(source: Source, number: int, per_page: int) -> TreePage:
    """One page of an object's top-level entries (or of a scalar), each as a tree."""
    number = max(1, number)
    layout = _layout(source)
    if layout.kind == "scalar":
        value = next(ijson.items(_open(source), layout.prefix, use_float=True, buf_size=_READ_SIZE))
        return TreePage(nodes=[tree(value)], number=1, has_next=False, is_root_scalar=True)
    if layout.kind == "array":
        entries = enumerate(ijson.items(_open(source), layout.items_prefix(), use_float=True, buf_size=_READ_SIZE))
    else:
        entries = ijson.kvitems(_open(source), layout.prefix, use_float=True, buf_size=_READ_SIZE)
    start = (number - 1) * per_page
    taken = list(itertools.islice(entries, start, start + per_page + 1))
    nodes = [tree(value, str(key), 1) for key, value in taken[:per_page]]
    return TreePage(nodes=nodes, number=number, has_next=len(taken) > per_page)


# --- Graphics -----------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_IMAGE_PIXELS = 40_000_000


def png_data_uri(encoded: Any) -> str | None:
    """A `data:image/png;base64,` URI for a base64 PNG that really is one (signature checked and the image
    decoded); None for anything else, which is then never shown as a picture."""
    if not isinstance(encoded, str):
        return None
    try:
        raw = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    if not raw.startswith(PNG_SIGNATURE):
        return None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(raw), formats=["PNG"]) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                return None
            image.load()
    except Exception:  # any decoding failure means "not a picture"
        return None
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


@dataclass
class Graphic:
    number: int
    id: str
    image_uri: str | None
    data: TreeNode | None
    data_text: str  # DATA when it is not JSON


def graphic(number: int, item: dict) -> Graphic:
    data_raw = item.get("DATA")
    data, data_text = None, ""
    if isinstance(data_raw, str):
        try:
            data = tree(json.loads(data_raw))
        except ValueError:
            data_text = data_raw
    elif data_raw is not None:
        data = tree(data_raw)
    return Graphic(
        number=number,
        id=cell_text(item.get("ID")),
        image_uri=png_data_uri(item.get("IMAGE")),
        data=data,
        data_text=data_text,
    )


@dataclass
class GraphicsPage:
    items: list[Graphic]
    number: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.number > 1


def graphics_page(source: Source, number: int, per_page: int) -> GraphicsPage:
    number = max(1, number)
    start = (number - 1) * per_page
    taken = list(itertools.islice(iter_rows(source, GRAPHICS), start, start + per_page + 1))
    items = [graphic(n, cells) for n, cells in taken[:per_page]]
    return GraphicsPage(items=items, number=number, has_next=len(taken) > per_page)


# --- Raw text -----------------------------------------------------------------------------------


@dataclass
class RawPage:
    text: str
    number: int
    has_next: bool
    start: int
    end: int

    @property
    def has_previous(self) -> bool:
        return self.number > 1


def raw_page(source: Source, number: int, page_bytes: int) -> RawPage:
    """Bytes [start, end) of the body as text, the edges moved to UTF-8 character boundaries."""
    number = max(1, number)
    start, end = (number - 1) * page_bytes, number * page_bytes
    wanted = bytearray()
    offset = 0
    more = False
    for chunk in source():
        chunk_end = offset + len(chunk)
        if chunk_end > start and offset < end + 4:
            wanted += chunk[max(0, start - offset) : max(0, min(len(chunk), end + 4 - offset))]
        if chunk_end > end:
            more = True
        if chunk_end >= end + 4:
            break
        offset = chunk_end
    head = 0
    if start:
        while head < min(4, len(wanted)) and wanted[head] & 0xC0 == 0x80:
            head += 1
    tail = min(len(wanted), end - start)
    while 0 < tail < len(wanted) and wanted[tail] & 0xC0 == 0x80:
        tail += 1
    text = bytes(wanted[head:tail]).decode("utf-8", errors="replace")
    return RawPage(text=text, number=number, has_next=more, start=start + head, end=start + tail)
