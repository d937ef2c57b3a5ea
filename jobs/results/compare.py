"""Comparing two jobs: their requests, their timing, and their results cell by cell."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from jobs.models import Job, JobResult
from jobs.results.bodies import GROUPS, LEAD_COLUMNS, MISSING, OBJECT, cell_text, iter_rows, result_source, shape_of
from jobs.selectors.jobs import job_durations

MAX_COMPARE_ROWS = 100_000
MAX_SHOWN_DIFFS = 200

REQUEST_FIELDS = [
    ("connection", "Connection"),
    ("kind", "Kind"),
    ("script_name", "Script"),
    ("script_owner", "Script owner"),
    ("input_sql", "Input (SQL)"),
    ("rows", "Rows"),
    ("group_by", "Group by"),
    ("order_by", "Order by"),
    ("times", "Times"),
    ("parallel_flag", "Parallel flag"),
    ("parallel", "Parallel"),
    ("service", "Service"),
    ("async_flag", "Async"),
    ("timeout", "Timeout"),
    ("graphics_flag", "Graphics"),
    ("env_name", "Environment"),
    ("script_sha256", "Script source (sha256)"),
]


@dataclass
class FieldRow:
    name: str
    a: str
    b: str

    @property
    def differs(self) -> bool:
        return self.a != self.b


def _text(value: Any) -> str:
    if value is None or value == "":
        return ""
    return str(value) if not isinstance(value, bool | dict | list) else cell_text(value)


def compare_requests(a: Job, b: Job) -> list[FieldRow]:
    """Each request field side by side, then each script parameter (`parameters.<name>`)."""
    rows = [FieldRow(label, _text(getattr(a, name)), _text(getattr(b, name))) for name, label in REQUEST_FIELDS]
    params_a = a.parameters if isinstance(a.parameters, dict) else {}
    params_b = b.parameters if isinstance(b.parameters, dict) else {}
    for key in list(dict.fromkeys([*params_a, *params_b])):
        rows.append(
            FieldRow(
                f"parameters.{key}",
                cell_text(params_a[key]) if key in params_a else "(absent)",
                cell_text(params_b[key]) if key in params_b else "(absent)",
            )
        )
    return rows


@dataclass
class TimingRow:
    phase: str
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else round(self.b - self.a, 3)


def compare_timing(a: Job, b: Job) -> list[TimingRow]:
    da, db = job_durations(a), job_durations(b)
    labels = {
        "queue": "Queue wait",
        "oml": "OML time",
        "lag": "Detection lag (at most)",
        "fetch": "Fetch time",
        "total": "Total",
    }
    return [TimingRow(label, da[key], db[key]) for key, label in labels.items()]


@dataclass
class CellDiff:
    row: int
    key: str  # group label, index or path when the shape has one
    column: str
    a: str
    b: str


@dataclass
class ResultComparison:
    shape_a: str
    shape_b: str
    rows_a: int | None
    rows_b: int | None
    columns_a: list[str] = field(default_factory=list)
    columns_b: list[str] = field(default_factory=list)
    differing_cells: int = 0
    diffs: list[CellDiff] = field(default_factory=list)
    rows_compared: int = 0
    limited: bool = False

    @property
    def columns_only_a(self) -> list[str]:
        return [c for c in self.columns_a if c not in self.columns_b]

    @property
    def columns_only_b(self) -> list[str]:
        return [c for c in self.columns_b if c not in self.columns_a]

    @property
    def same(self) -> bool:
        return (
            self.shape_a == self.shape_b
            and self.differing_cells == 0
            and self.columns_a == self.columns_b
            and self.rows_a == self.rows_b
        )


def _show(value: Any) -> str:
    if value is MISSING:
        return "(absent)"
    if value is None:
        return "null"
    return cell_text(value)


def _add_columns(columns: dict[str, None], cells: dict) -> None:
    for name in cells:
        columns.setdefault(name, None)


def _equal(x: Any, y: Any) -> bool:
    """JSON equality: 1 equals 1.0, but true is not 1."""
    if isinstance(x, bool) or isinstance(y, bool):
        return type(x) is type(y) and x == y
    return x == y


def _pairs(a: JobResult, b: JobResult, shape_a: str, shape_b: str):
    rows_a = iter_rows(result_source(a), shape_a)
    rows_b = iter_rows(result_source(b), shape_b)
    if shape_a == shape_b == OBJECT:
        # Leaves are matched by path, so that one added key does not shift every later leaf.
        left = dict(itertools.islice(rows_a, MAX_COMPARE_ROWS + 1))
        right = dict(itertools.islice(rows_b, MAX_COMPARE_ROWS + 1))
        for path in dict.fromkeys([*left, *right]):
            yield ((path, left[path]) if path in left else None), ((path, right[path]) if path in right else None)
        return
    yield from itertools.zip_longest(rows_a, rows_b)


def compare_results(a: JobResult, b: JobResult) -> ResultComparison:
    """Row counts, columns and the cells that differ: rows matched in order (object leaves by path), over at
    most MAX_COMPARE_ROWS rows; both bodies are read incrementally, side by side."""
    shape_a, shape_b = shape_of(a), shape_of(b)
    comparison = ResultComparison(shape_a, shape_b, a.row_count, b.row_count)
    columns_a: dict[str, None] = {}
    columns_b: dict[str, None] = {}
    lead = LEAD_COLUMNS.get(shape_a) if shape_a == shape_b else None
    for n, (row_a, row_b) in enumerate(_pairs(a, b, shape_a, shape_b), start=1):
        if n > MAX_COMPARE_ROWS:
            comparison.limited = True
            break
        comparison.rows_compared = n
        lead_a, cells_a = row_a if row_a is not None else (MISSING, {})
        lead_b, cells_b = row_b if row_b is not None else (MISSING, {})
        _add_columns(columns_a, cells_a)
        _add_columns(columns_b, cells_b)
        key = _show(lead_a if lead_a is not MISSING else lead_b) if lead else ""
        checks = [(lead, lead_a, lead_b)] if shape_a == shape_b == GROUPS else []
        checks += [(c, cells_a.get(c, MISSING), cells_b.get(c, MISSING)) for c in dict.fromkeys([*cells_a, *cells_b])]
        for column, value_a, value_b in checks:
            if not _equal(value_a, value_b):
                comparison.differing_cells += 1
                if len(comparison.diffs) < MAX_SHOWN_DIFFS:
                    comparison.diffs.append(CellDiff(n, key, column, _show(value_a), _show(value_b)))
    comparison.columns_a = list(columns_a)
    comparison.columns_b = list(columns_b)
    return comparison
