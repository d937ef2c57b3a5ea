"""Following a job until it ends: a live status line on a terminal, a line per change anywhere else."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from omlpy_client.errors import WaitTimeoutError, first_line
from omlpy_client.job import Job

from .app import ExitCode
from .output import clock, seconds, warn, when


class _Status:
    """The live line, drawn anew at each refresh so that the waiting time ticks between polls."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.started = time.monotonic()
        self.spinner = Spinner("dots")

    def line(self) -> str:
        job = self.job
        return (
            f"job {job.id} · {job.state} · OML elapsed {clock(job.oml_elapsed_seconds)} · "
            f"{job.poll_count} status polls · following for {seconds(time.monotonic() - self.started)}"
        )

    def __rich__(self) -> RenderableType:
        self.spinner.text = Text(self.line())
        return Group(self.spinner)


def _change_line(job: Job) -> str:
    elapsed = f" (OML elapsed {clock(job.oml_elapsed_seconds)})" if job.oml_elapsed_seconds is not None else ""
    return f"{when(datetime.now(UTC))}  {job.id}  {job.state}{elapsed}"


def follow(job: Job, *, timeout: float | None, console: Console, live: bool, interval: float = 0.5) -> Job:
    """Poll `job` until it ends, showing its progress on `console`; WaitTimeoutError when out of time."""
    if live and console.is_terminal:
        status = _Status(job)
        with Live(status, console=console, refresh_per_second=8, transient=True):
            job.wait(timeout, interval=interval)
        return job
    job.wait(timeout, on_change=lambda changed: console.print(_change_line(changed), markup=False), interval=interval)
    return job


def outcome(job: Job) -> ExitCode:
    """The exit code a followed job ends the command with; a line on stderr when it did not succeed."""
    if job.succeeded:
        return ExitCode.OK
    reason = f": {first_line(job.last_error)}" if job.last_error else ""
    warn(f"omlpy: job {job.id} ended {job.state}{reason} (`omlpy show {job.id}` says more)")
    return ExitCode.JOB_FAILED


def out_of_time(exc: WaitTimeoutError) -> ExitCode:
    warn(
        f"omlpy: job {exc.job.id} is still {exc.job.state} after {exc.seconds:g} s; "
        f"keep following it with `omlpy watch {exc.job.id}`"
    )
    return ExitCode.WAIT_TIMEOUT
