"""JSON read without recursion, and text the databases can store.

Python's json module recurses once per level of nesting, so a value nested a few thousand levels deep raises
RecursionError instead of a parse error. `nesting_overflow` measures the nesting of JSON text with a loop over
its brackets, before json.loads sees it; `value_depth` measures an already parsed value the same way. The
limits themselves belong to the caller (jobs.services.specs holds the job request's).
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


# --- Syntax errors, worded as the compose form's own check words them ---------------------------------------

_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")


class _Stop(Exception):
    """A signal inside syntax_problem, never raised out of it."""

    def __init__(self, pos: int, message: str):
        self.pos, self.message = pos, message


def syntax_problem(text: str) -> str | None:
    """Where and why `text` is not JSON, in the words of static/js/compose.js's `jsonProblem` (the compose
    form's check as the analyst types), so that the form and the preview say the same of one typo; None when
    the text is JSON. Positions count characters (the browser counts UTF-16 units: a character outside the
    Basic Multilingual Plane earlier on the line shifts its column by one there).

    The reader mirrors the script's step by step: keep the two in step when either changes.
    """
    n = len(text)
    i = 0

    def fail(message: str):
        raise _Stop(i, "unexpected end of input" if i >= n else message)

    def ws() -> None:
        nonlocal i
        while i < n and text[i] in " \t\n\r":
            i += 1

    def string() -> None:
        nonlocal i
        i += 1
        while i < n:
            c = text[i]
            if c == '"':
                i += 1
                return
            if c == "\\":
                i += 1
                if i >= n:
                    break
                e = text[i]
                if e == "u":
                    if not _HEX4.fullmatch(text[i + 1 : i + 5]):
                        fail("invalid \\u escape")
                    i += 5
                    continue
                if e not in '"\\/bfnrt':
                    fail("invalid escape \\" + e)
                i += 1
                continue
            if c < " ":
                fail("control character in a string (write \\n for a new line)")
            i += 1
        fail("unterminated string")

    def number() -> None:
        nonlocal i
        found = _NUMBER.match(text, i)
        if not found or found.group(0) in ("", "-"):
            fail("invalid number")
        i = found.end()

    def value() -> None:
        nonlocal i
        ws()
        if i >= n:
            fail("")
        c = text[i]
        if c == "{":
            return obj()
        if c == "[":
            return array()
        if c == '"':
            return string()
        if c == "-" or "0" <= c <= "9":
            return number()
        for word in ("true", "false", "null"):
            if text.startswith(word, i):
                i += len(word)
                return None
        fail("expected a value (a string needs double quotes), found " + json.dumps(c, ensure_ascii=False))
        return None

    def at(k: int) -> str:
        return text[k] if k < n else ""

    def obj() -> None:
        nonlocal i
        i += 1
        ws()
        if at(i) == "}":
            i += 1
            return
        while True:
            ws()
            if at(i) != '"':
                fail("expected a property name in double quotes")
            string()
            ws()
            if at(i) != ":":
                fail("expected ':' after the property name")
            i += 1
            value()
            ws()
            if at(i) == ",":
                i += 1
                continue
            if at(i) == "}":
                i += 1
                return
            fail("expected ',' or '}' after a property value")

    def array() -> None:
        nonlocal i
        i += 1
        ws()
        if at(i) == "]":
            i += 1
            return
        while True:
            value()
            ws()
            if at(i) == ",":
                i += 1
                continue
            if at(i) == "]":
                i += 1
                return
            fail("expected ',' or ']' after an array item")

    try:
        ws()
        value()
        ws()
        if i < n:
            fail("unexpected text after the JSON value")
    except _Stop as stop:
        before = text[: stop.pos]
        line = before.count("\n") + 1
        column = stop.pos - before.rfind("\n")
        return f"Invalid JSON at line {line}, column {column}: {stop.message}."
    return None
