"""The engine's data database: the sample tables `input` queries read (see omlengine.inputs for the query).

The file holds public sample data and is the one file of VAR_DIR an execution's sandbox can see (read-only),
so it is readable by the sandbox's unprivileged user.
"""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

from django.conf import settings

DATA_DIR = Path(__file__).resolve().parent / "data"
READABLE_BY_ALL = 0o644


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
    path.chmod(READABLE_BY_ALL)
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
