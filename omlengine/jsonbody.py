"""JSON from requests, read without recursion and refused with OML's error answer when the engine cannot keep it.

Python's json module recurses once per level of nesting, so a body nested a few thousand levels deep would raise
RecursionError (a 500) instead of a parse error. The nesting is measured first, by a loop over the brackets.
What is parsed must also be storable: PostgreSQL refuses NUL characters in text and JSON, and a lone surrogate
cannot be encoded as UTF-8, so both are refused here, before the engine's tables see them.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from django.conf import settings

from .errors import INVALID_REQUEST, EngineError, bad_request

# Far deeper than any call's parameters need, far shallower than the interpreter's recursion limit.
MAX_DEPTH = 64

# A whole string literal, or a bracket outside one; the rest of the text does not change the nesting.
_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")


def too_large() -> EngineError:
    """413 for a body over DATA_UPLOAD_MAX_MEMORY_SIZE (Django raises RequestDataTooBig on reading it)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return EngineError(413, INVALID_REQUEST, f"The request body is larger than the limit of {limit} bytes.")


def object_from(raw_body: bytes) -> dict[str, Any]:
    """A request body as a JSON object; an empty body is an empty object."""
    if not raw_body.strip():
        return {}
    try:
        text = raw_body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("The request body is not valid JSON: it is not UTF-8 text.") from None
    body = loads(text, "The request body")
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def loads(text: str, what: str) -> Any:
    """JSON text nested at most MAX_DEPTH levels, holding nothing the engine cannot store; `what` names it in
    the message of the 400."""
    if _nesting(text) > MAX_DEPTH:
        raise bad_request(f"{what} is nested more than {MAX_DEPTH} levels deep.")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise bad_request(f"{what} is not valid JSON: {exc}") from None
    problem = _unstorable(value)
    if problem is not None:
        raise bad_request(f"{what} holds {problem}.")
    return value


def _nesting(text: str) -> int:
    deepest = depth = 0
    for match in _STRUCTURE.finditer(text):
        piece = match.group()
        if piece in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                break
        elif piece in "]}":
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unstorable(value: Any) -> str | None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "a NUL character, which the engine cannot store"
            if _SURROGATE.search(item):
                return "a lone surrogate, which is not valid Unicode"
        elif isinstance(item, float) and not math.isfinite(item):
            return "a number JSON does not have"
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None
