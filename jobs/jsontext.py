"""JSON read without recursion, and text the databases can store.

Python's json module recurses once per level of nesting, so a value nested a few thousand levels deep raises
RecursionError instead of a parse error. `nesting_overflow` measures the nesting of JSON text with a loop over
its brackets, before json.loads sees it; `value_depth` measures an already parsed value the same way. The
limits themselves belong to the caller (jobs.specs holds the job request's).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# A complete string literal (escapes included), or a bracket, brace, colon or comma outside of one. Everything
# else (numbers, literals, white space) is skipped by finditer.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}:,]', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")

NUL_MESSAGE = "Must not contain NUL characters."
SURROGATE_MESSAGE = "Must be valid Unicode text (a lone surrogate is not)."
NUMBER_MESSAGE = "Must not contain NaN or Infinity (JSON has no such numbers)."


class TooDeep(ValueError):
    """JSON nested beyond a limit. `key` names the member of the outermost object it happened under."""

    def __init__(self, limit: int, key: str | None):
        super().__init__(f"Nested more than {limit} levels deep.")
        self.limit = limit
        self.key = key


def nesting_overflow(text: str, limit: int) -> TooDeep | None:
    """Whether JSON text nests containers more than `limit` deep (the outermost counts as 1), and where.

    Only structure is read: text that is not JSON at all is left for json.loads to describe.
    """
    depth = 0
    key: str | None = None
    candidate: str | None = None
    for match in _TOKEN.finditer(text):
        piece = match.group()
        if piece in "[{":
            depth += 1
            if depth > limit:
                return TooDeep(limit, key)
        elif piece in "]}":
            depth -= 1
        elif depth == 1 and piece == ":":
            key = candidate
        elif depth == 1 and piece.startswith('"'):
            candidate = _string_literal(piece)
    return None


def _string_literal(literal: str) -> str | None:
    try:
        value = json.loads(literal)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def loads(text: str, *, max_depth: int) -> Any:
    """json.loads that raises TooDeep (a ValueError) instead of recursing past `max_depth` levels, and refuses
    the NaN and Infinity that Python's json reads but JSON does not have."""
    overflow = nesting_overflow(text, max_depth)
    if overflow is not None:
        raise overflow
    return json.loads(text, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def value_depth(value: Any) -> int:
    """How deep containers nest in a parsed JSON value (a scalar is 0, `{}` is 1), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((child, depth + 1) for child in item)
        else:
            continue
        deepest = max(deepest, depth + 1)
    return deepest


def value_problem(value: Any) -> str | None:
    """Why a parsed JSON value (or a string) cannot be stored or sent on: PostgreSQL refuses NUL in text and
    JSON (SQLite does not, so it is refused before either sees it), a lone surrogate cannot be encoded as
    UTF-8 at all, and NaN and Infinity are not JSON numbers."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return NUL_MESSAGE
            if _SURROGATE.search(item):
                return SURROGATE_MESSAGE
        elif isinstance(item, float) and not math.isfinite(item):
            return NUMBER_MESSAGE
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None
