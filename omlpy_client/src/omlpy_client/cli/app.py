"""The `omlpy` Typer application, its exit codes, and what every command shares."""

from __future__ import annotations

import enum
import uuid
from typing import Annotated

import typer

from omlpy_client.client import Client


class ExitCode(enum.IntEnum):
    OK = 0  # done (and, when waited for, the job succeeded)
    JOB_FAILED = 1  # the job failed, timed out or was cancelled; or has no result; or had already ended
    USAGE = 2  # a wrong command line, or a request the server found invalid
    REFUSED = 3  # not signed in, or the token or the user's rights were refused
    SERVER = 4  # the server is unreachable, or answers 5xx after the retries
    WAIT_TIMEOUT = 5  # --wait or watch ran out of time


class Output(enum.StrEnum):
    text = "text"
    json = "json"


HELP = """Submit, follow and fetch OML4Py jobs on an OMLPy Dashboard, over its JSON API.

Start with `omlpy login URL`. OMLPY_URL and OMLPY_TOKEN override the stored sign-in.

Exit codes: 0 done (and succeeded, when waited for); 1 the job failed, timed out or was cancelled;
2 usage error; 3 not signed in or refused; 4 server unreachable or failing; 5 out of time waiting.
"""

app = typer.Typer(
    name="omlpy",
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

OutputOption = Annotated[
    Output, typer.Option("--output", help="text: tables for people; json: one JSON document for scripts.")
]
JobArgument = Annotated[str, typer.Argument(metavar="JOB", help="A job id, as `omlpy ls` shows it.")]
WaitOption = Annotated[bool, typer.Option("--wait", help="Follow the job until it ends; exit 1 unless it succeeds.")]
TimeoutOption = Annotated[
    float | None, typer.Option("--timeout", min=0, help="Stop waiting after this many seconds (exit 5).")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the new job's id.")]


def connect() -> Client:
    """The client of the stored sign-in (and the environment's overrides)."""
    return Client.from_config()


def job_id(value: str) -> str:
    """A job id as the API takes it; a usage error for anything that is not a UUID."""
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a job id (a UUID, as `omlpy ls` shows)", param_hint="JOB") from None
