"""How results are shown: Rich tables for people, one JSON document for scripts, errors as one line."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from omlpy_client.errors import first_line
from omlpy_client.job import Job

# When the output is not a terminal (a pipe, a file), tables are drawn this wide rather than folded to 80.
PIPE_WIDTH = 200


def console() -> Console:
    if sys.stdout.isatty():
        return Console(highlight=False)
    columns = os.environ.get("COLUMNS", "")
    return Console(highlight=False, width=max(int(columns) if columns.isdigit() else 0, PIPE_WIDTH))


def error_console() -> Console:
    return Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def say(text: str) -> None:
    """A line for people, on stdout, taken literally (no markup)."""
    console().print(text, markup=False)


def warn(text: str) -> None:
    """One line on stderr: a message about the run rather than its output."""
    error_console().print(text, markup=False, soft_wrap=True)


def when(value: datetime | str | None) -> str:
    """A time in the local time zone, with the zone named."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
    if value is None:
        return ""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def clock(value: float | None) -> str:
    """Seconds as OML shows an elapsed time, HH:MM:SS."""
    if value is None:
        return "--:--:--"
    hours, rest = divmod(round(value), 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def table(*columns: str, title: str | None = None) -> Table:
    grid = Table(title=title, title_justify="left", header_style="bold", show_edge=False, pad_edge=False)
    for name in columns:
        # Ids and values are never cut short: a long cell wraps within its column instead.
        grid.add_column(name, overflow="fold")
    return grid


def key_values(rows: list[tuple[str, str]], title: str | None = None) -> Table:
    grid = Table(title=title, title_justify="left", show_header=False, show_edge=False, pad_edge=False, box=None)
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in rows:
        if value:
            grid.add_row(name, value)
    return grid


def job_rows(jobs: list[Job]) -> Table:
    grid = table("ID", "STATE", "KIND", "SCRIPT", "OWNER", "CREATED", "TOTAL")
    for job in jobs:
        grid.add_row(
            job.id,
            job.state,
            job.kind,
            job.script,
            job.owner,
            when(job.created_at),
            seconds(job.durations.get("total")),
        )
    return grid


def job_summary(job: Job) -> str:
    """One line about a job: what ran, where it stands, how long it took."""
    text = f"Job {job.id} ({job.kind} {job.script}): {job.state}"
    total = job.durations.get("total")
    if total is not None:
        phases = ", ".join(
            f"{name} {seconds(job.durations.get(key))}"
            for key, name in (("queue", "queue"), ("oml", "OML"), ("fetch", "fetch"))
            if job.durations.get(key) is not None
        )
        text += f" in {seconds(total)}" + (f" ({phases})" if phases else "")
    if job.last_error and not job.succeeded:
        text += f": {first_line(job.last_error)}"
    return text
