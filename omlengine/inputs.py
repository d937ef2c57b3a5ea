"""The `input` query: checked in the web process, run inside the execution's own process.

Free of Django, because it runs in the sandbox: the process that runs the query is the one under the CPU,
memory and wall-clock limits, so a query that never ends or returns more rows than fit is stopped like a script.
The SQLite file is opened read-only (`mode=ro`) under an authorizer that allows reading only, so a statement
that writes is refused twice over and changes nothing.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from .errors import INVALID_INPUT_QUERY, bad_request

_READ_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
_LEADING_COMMENTS = re.compile(r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*", re.DOTALL)


def check_read_only(sql: str) -> None:
    """Refuse anything but a SELECT (or WITH ... SELECT) before it reaches the database."""
    words = _LEADING_COMMENTS.sub("", sql).split(None, 1)
    if not words or words[0].upper() not in ("SELECT", "WITH"):
        raise bad_request(
            "The input must be a query (SELECT or WITH); statements that change data are not allowed.",
            INVALID_INPUT_QUERY,
        )


def read(sql: str, database: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run a read-only query; answer its upper-case column names (as Oracle names unquoted columns) and rows."""
    check_read_only(sql)
    try:
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise bad_request(f"The input query failed: {exc}", INVALID_INPUT_QUERY) from None
    connection.set_authorizer(_authorize)
    try:
        cursor = connection.execute(sql)
        columns = [description[0].upper() for description in cursor.description or ()]
        return columns, cursor.fetchall()
    except (sqlite3.Error, sqlite3.Warning) as exc:
        raise bad_request(f"The input query failed: {exc}", INVALID_INPUT_QUERY) from None
    finally:
        connection.close()


def _authorize(action: int, *_args: object) -> int:
    return sqlite3.SQLITE_OK if action in _READ_ACTIONS else sqlite3.SQLITE_DENY
