"""The engine's data database: the sample tables `input` queries read, and the read-only query itself.

Queries open the SQLite file read-only (`mode=ro`) and run under an authorizer that allows reading only, so a
statement that writes is refused twice over and changes nothing.
"""

from __future__ import annotations

import csv
import re
import sqlite3
from pathlib import Path
from typing import Any

from django.conf import settings

from .errors import INVALID_INPUT_QUERY, bad_request

DATA_DIR = Path(__file__).resolve().parent / "data"

_READ_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
_LEADING_COMMENTS = re.compile(r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*", re.DOTALL)


def query(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run a read-only query; answer its upper-case column names (as Oracle names unquoted columns) and rows."""
    check_read_only(sql)
    connection = sqlite3.connect(f"file:{settings.OMLENGINE_DATA_DB}?mode=ro", uri=True, timeout=10)
    connection.set_authorizer(_authorize)
    try:
        cursor = connection.execute(sql)
        columns = [description[0].upper() for description in cursor.description or ()]
        return columns, cursor.fetchall()
    except (sqlite3.Error, sqlite3.Warning) as exc:
        raise bad_request(f"The input query failed: {exc}", INVALID_INPUT_QUERY) from None
    finally:
        connection.close()


def check_read_only(sql: str) -> None:
    """Refuse anything but a SELECT (or WITH ... SELECT) before it reaches the database."""
    words = _LEADING_COMMENTS.sub("", sql).split(None, 1)
    if not words or words[0].upper() not in ("SELECT", "WITH"):
        raise bad_request(
            "The input must be a query (SELECT or WITH); statements that change data are not allowed.",
            INVALID_INPUT_QUERY,
        )


def _authorize(action: int, *_args: object) -> int:
    return sqlite3.SQLITE_OK if action in _READ_ACTIONS else sqlite3.SQLITE_DENY


def seed() -> list[str]:
    """Create the data database and load every CSV file of DATA_DIR whose table is missing or incomplete.

    Safe to run repeatedly: a complete table is left alone; a partial one is replaced in one transaction.
    Answers the names of the tables it (re)loaded.
    """
    path = Path(settings.OMLENGINE_DATA_DB)
    path.parent.mkdir(parents=True, exist_ok=True)
    loaded = []
    connection = sqlite3.connect(path, timeout=30)
    try:
        for csv_path in sorted(DATA_DIR.glob("*.csv")):
            if _load_table(connection, csv_path.stem.upper(), csv_path):
                loaded.append(csv_path.stem.upper())
    finally:
        connection.close()
    return loaded


def _load_table(connection: sqlite3.Connection, table: str, csv_path: Path) -> bool:
    with csv_path.open(newline="") as handle:
        header, *rows = list(csv.reader(handle))
    if _row_count(connection, table) == len(rows):
        return False
    typed = _typed_columns(header, rows)
    columns = ", ".join(f'"{name}" {kind}' for name, kind in typed)
    values = [tuple(_cast(value, kind) for value, (_, kind) in zip(row, typed, strict=True)) for row in rows]
    with connection:
        connection.execute(f'DROP TABLE IF EXISTS "{table}"')
        connection.execute(f'CREATE TABLE "{table}" ({columns})')
        connection.executemany(f'INSERT INTO "{table}" VALUES ({", ".join("?" * len(header))})', values)  # noqa: S608 - names come from the shipped files
    return True


def _row_count(connection: sqlite3.Connection, table: str) -> int | None:
    try:
        return connection.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]  # noqa: S608 - shipped name
    except sqlite3.OperationalError:
        return None


def _typed_columns(header: list[str], rows: list[list[str]]) -> list[tuple[str, str]]:
    """REAL for a column whose every value is a number, TEXT otherwise."""

    def numeric(index: int) -> bool:
        try:
            for row in rows:
                float(row[index])
        except ValueError:
            return False
        return True

    return [(name.upper(), "REAL" if numeric(index) else "TEXT") for index, name in enumerate(header)]


def _cast(value: str, kind: str) -> float | str:
    return float(value) if kind == "REAL" else value
