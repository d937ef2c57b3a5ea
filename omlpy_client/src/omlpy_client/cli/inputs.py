"""Job requests from the command line: `--param key=value`, `--parameters JSON|@file`, `--file job.json`, and
the times of `ls --since/--until`."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _no_constants(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity are not JSON: such a value stays a string


def param_value(text: str) -> Any:
    """A value as JSON when it reads as JSON (5, true, null, [1, 2], "5"), else the text itself."""
    try:
        return json.loads(text, parse_constant=_no_constants)
    except ValueError:
        return text


def parse_params(items: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not key=value", param_hint="'--param'")
        params[key.strip()] = param_value(raw)
    return params


def read_json_object(text: str, what: str) -> dict[str, Any]:
    """A JSON object from text, or from the file `@path` names."""
    source = what
    if text.startswith("@"):
        path = Path(text[1:])
        source = str(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {path}: {exc.strerror or exc}", param_hint=what) from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{source} is not JSON: {exc}", param_hint=what) from None
    if not isinstance(value, dict):
        raise typer.BadParameter(f"{source} must hold a JSON object", param_hint=what)
    return value


def parse_moment(text: str | None, what: str) -> str | None:
    """An ISO 8601 date or time (local time when it names no zone), or a time ago: 30m, 12h, 7d, 2w."""
    if text is None:
        return None
    relative = _RELATIVE.match(text)
    if relative:
        ago = timedelta(**{_UNITS[relative[2]]: float(relative[1])})
        return (datetime.now(UTC) - ago).isoformat()
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither an ISO 8601 date or time nor a time ago such as 30m, 12h, 7d", param_hint=what
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.isoformat()
