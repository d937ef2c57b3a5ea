"""What runs inside an execution's own process: the script's calls, and OML's JSON shapes of what they return.

This module is preloaded by the fork server (pandas, numpy and matplotlib imported once), so that each
execution's process starts as a cheap fork. It never imports Django: the parent hands it plain data.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import math
import os
import traceback
from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import Any

# One thread each: a process per execution already gives parallelism, and BLAS thread pools would both
# oversubscribe the cores and reserve address space against the memory limit.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# Arrow's own allocator (behind pandas' strings) reserves a gigabyte of address space on its first allocation,
# which the memory limit (RLIMIT_AS) counts; the C library's allocator takes only what is used.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .errors import OUTPUT_TOO_LONG, SCRIPT_ERROR, EngineError, bad_request  # noqa: E402

# Arrow picks its allocator on first use: here, while the variable above is set (the fork server then empties
# the environment), and before any execution's limits.
pd.Series(["preloaded"])

OUTPUT_LIMIT = 5000


def execute(task: dict[str, Any]) -> str:
    """Run the task's calls for its kind and answer the JSON text of the assembled result."""
    function = _load_function(task["script_name"], task["source"])
    execution = task["execution"]
    frame = _frame(task.get("data"), execution["na_omit"])
    calls = _CALL_KINDS[execution["kind"]](function, frame, execution)
    result = _assemble(execution["kind"], calls, execution["graphics"])
    _check_length(result)
    return json.dumps(result, allow_nan=False, separators=(",", ":"))


# --- loading the script ---------------------------------------------------------------------------
def _load_function(name: str, source: str) -> Callable[..., Any]:
    """The function named like the script, or else the last function the source defines."""
    filename = _script_filename(name)
    namespace: dict[str, Any] = {"__name__": f"oml_script_{name}"}
    try:
        exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - running registered scripts is the engine's job
    except Exception as exc:
        raise _script_error(name, exc) from None
    if callable(namespace.get(name)):
        return _guarded(name, namespace[name])
    defined = [node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)]
    if not defined:
        raise bad_request(f"Script {name} defines no function.", SCRIPT_ERROR)
    return _guarded(name, namespace[defined[-1]])


def _script_filename(name: str) -> str:
    return f"<script {name}>"


def _guarded(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn any exception the script raises into a 400 naming the script, its error and its own frames."""

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except MemoryError:
            raise
        except Exception as exc:
            raise _script_error(name, exc) from None

    return call


def _script_error(name: str, exc: BaseException) -> EngineError:
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == _script_filename(name)]
    where = "".join(traceback.format_list(frames)).rstrip()
    detail = f"{type(exc).__name__}: {exc}"
    message = f"Error in script {name}: {detail}" + (f"\nTraceback (most recent call last):\n{where}" if where else "")
    return EngineError(400, SCRIPT_ERROR, message)


# --- input ----------------------------------------------------------------------------------------
def _frame(data: dict[str, Any] | None, na_omit: bool) -> pd.DataFrame | None:
    if data is None:
        return None
    frame = pd.DataFrame.from_records(data["rows"], columns=data["columns"])
    return frame.dropna().reset_index(drop=True) if na_omit else frame


def _as_input(frame: pd.DataFrame, input_type: str) -> Any:
    """OML's oml_input_type: a DataFrame, a record array, or ("default") an array when all columns are numbers."""
    if input_type == "numpy.recarray":
        return frame.to_records(index=False)
    if input_type == "default" and all(pd.api.types.is_numeric_dtype(dtype) for dtype in frame.dtypes):
        return frame.to_numpy()
    return frame


def _column(frame: pd.DataFrame, name: str) -> str:
    """Match a column the way Oracle matches unquoted identifiers: case-insensitively."""
    for column in frame.columns:
        if column.upper() == name.upper():
            return column
    raise bad_request(f'Column "{name}" is not in the input; its columns are {", ".join(frame.columns)}.')


# --- the calls of each kind -----------------------------------------------------------------------
Call = tuple[Any, list[str]]  # a return value and the PNG images (base64) drawn during the call


def _call(function: Callable[..., Any], *args: Any, graphics: bool, **kwargs: Any) -> Call:
    plt.close("all")
    value = function(*args, **kwargs)
    _check_length(value)
    images = _images() if graphics else []
    plt.close("all")
    return value, images


def _do_eval(function: Callable[..., Any], frame: None, execution: dict[str, Any]) -> list[Call]:
    return [_call(function, graphics=execution["graphics"], **execution["kwargs"])]


def _table_apply(function: Callable[..., Any], frame: pd.DataFrame, execution: dict[str, Any]) -> list[Call]:
    data = _as_input(frame, execution["input_type"])
    return [_call(function, data, graphics=execution["graphics"], **execution["kwargs"])]


def _row_apply(function: Callable[..., Any], frame: pd.DataFrame, execution: dict[str, Any]) -> list[Call]:
    size = execution["rows"]
    chunks = (frame.iloc[start : start + size].reset_index(drop=True) for start in range(0, len(frame), size))
    return [
        _call(
            function, _as_input(chunk, execution["input_type"]), graphics=execution["graphics"], **execution["kwargs"]
        )
        for chunk in chunks
    ]


def _group_apply(function: Callable[..., Any], frame: pd.DataFrame, execution: dict[str, Any]) -> list[Call]:
    calls = []
    for label, group in _groups(frame, execution["group_by"], execution["order_by"]):
        data = _as_input(group, execution["input_type"])
        value, images = _call(function, data, graphics=execution["graphics"], **execution["kwargs"])
        calls.append(((label, value), images))
    return calls


def _groups(frame: pd.DataFrame, group_by: list[str], order_by: list[str]) -> Iterator[tuple[str, pd.DataFrame]]:
    """Each group, rows in orderBy order (stable), labelled by its values joined with "_"."""
    keys = [_column(frame, name) for name in group_by]
    order = [_column(frame, name) for name in order_by]
    if order:
        frame = frame.sort_values(order, kind="mergesort")
    for values, group in frame.groupby(keys, sort=True, dropna=False):
        label = "_".join(str(value) for value in values)
        yield label, group.reset_index(drop=True)


def _index_apply(function: Callable[..., Any], frame: None, execution: dict[str, Any]) -> list[Call]:
    return [
        _call(function, index, graphics=execution["graphics"], **execution["kwargs"])
        for index in range(1, execution["times"] + 1)
    ]


_CALL_KINDS = {
    "do-eval": _do_eval,
    "table-apply": _table_apply,
    "row-apply": _row_apply,
    "group-apply": _group_apply,
    "index-apply": _index_apply,
}


# --- output ---------------------------------------------------------------------------------------
def _assemble(kind: str, calls: list[Call], graphics: bool) -> Any:
    """OML's shape per kind: one value, a flat list of row records, groups by label, or a list by index."""
    if kind == "group-apply":
        return {label: _shaped(value, images, graphics, records=False) for (label, value), images in calls}
    shaped = [_shaped(value, images, graphics) for value, images in calls]
    if kind == "index-apply":
        return shaped
    if kind == "row-apply":
        return _renumbered(_flatten(shaped)) if graphics else _flatten(shaped)
    return shaped[0]


def _shaped(value: Any, images: list[str], graphics: bool, records: bool = True) -> Any:
    plain = plain_json(value, records=records)
    if not graphics:
        return plain
    data = json.dumps(plain, allow_nan=False)
    return [{"IMAGE": image, "DATA": data, "ID": number} for number, image in enumerate(images or [None], start=1)]


def _flatten(parts: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for part in parts:
        if isinstance(part, list):
            flat.extend(part)
        else:
            flat.append(part)
    return flat


def _renumbered(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**entry, "ID": number} for number, entry in enumerate(entries, start=1)]


def plain_json(value: Any, records: bool = True) -> Any:
    """A JSON-ready copy of a return value: DataFrames as records (or to_dict()), floats to ~10 significant decimals."""
    if isinstance(value, pd.DataFrame):
        return plain_json(value.to_dict(orient="records") if records else value.to_dict())
    if isinstance(value, pd.Series | np.ndarray):
        return plain_json(value.tolist())
    if isinstance(value, dict):
        return {str(plain_json(key)): plain_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain_json(item) for item in value]
    if isinstance(value, np.generic):
        return plain_json(value.item())
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else float(f"{value:.10e}")
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _check_length(value: Any) -> None:
    if not isinstance(value, str | bytes) and hasattr(value, "__len__") and len(value) > OUTPUT_LIMIT:
        raise bad_request(f"Output exceeds maximum length {OUTPUT_LIMIT}", OUTPUT_TOO_LONG)


def _images() -> list[str]:
    images = []
    for number in plt.get_fignums():
        buffer = io.BytesIO()
        plt.figure(number).savefig(buffer, format="png")
        images.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return images
