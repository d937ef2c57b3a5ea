"""`omlpy`: the entry point. Runs a command and turns whatever went wrong into one line on stderr that says
what to do, and an exit code (cli.app.ExitCode); never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from omlpy_client import __version__
from omlpy_client.config import load_settings, stored_url
from omlpy_client.errors import (
    ApiError,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    InvalidRequestError,
    JobNotSucceededError,
    NotFoundError,
    NotSignedInError,
    OmlpyError,
    PermissionDeniedError,
    UnreachableError,
    WaitTimeoutError,
)

from . import account, jobs, reading  # noqa: F401 - they add their commands to the app
from .app import ExitCode, app
from .output import warn


def _click_error(name: str) -> type[Exception]:
    """Click's exception class of this name, whether Typer uses the click package or a copy of its own."""
    return next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == name)


UsageError = _click_error("UsageError")
ClickException = _click_error("ClickException")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"omlpy {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    pass


def _server() -> str:
    try:
        return load_settings().url
    except OmlpyError:
        return stored_url() or "URL"


def explain(exc: OmlpyError) -> tuple[str, ExitCode]:
    """The line to show for an error, and the exit code it ends the command with."""
    if isinstance(exc, NotSignedInError):
        return str(exc), ExitCode.REFUSED
    if isinstance(exc, ConfigurationError):
        return str(exc), ExitCode.USAGE
    if isinstance(exc, AuthenticationError):
        return (
            f"the server refused the token ({exc.message}); it may be expired, revoked or mistyped: "
            f"sign in again with `omlpy login {_server()}`",
            ExitCode.REFUSED,
        )
    if isinstance(exc, PermissionDeniedError):
        return (
            f"refused: {exc.message} If the token is read-only or lacks the rights, sign in with another: "
            f"`omlpy login {_server()}`",
            ExitCode.REFUSED,
        )
    if isinstance(exc, InvalidRequestError):
        return f"the server refused the request: {exc.message}", ExitCode.USAGE
    if isinstance(exc, NotFoundError):
        return f"{exc.message} (no such job, or not one you may see: `omlpy ls` lists yours)", ExitCode.USAGE
    if isinstance(exc, ConflictError | JobNotSucceededError):
        message = exc.message if isinstance(exc, ApiError) else str(exc)
        return message, ExitCode.JOB_FAILED
    if isinstance(exc, WaitTimeoutError):
        return f"{exc}; keep following it with `omlpy watch {exc.job.id}`", ExitCode.WAIT_TIMEOUT
    if isinstance(exc, UnreachableError):
        return f"{exc}; check the address (`omlpy login URL`) and that the server is up", ExitCode.SERVER
    if isinstance(exc, ApiError):
        return (
            f"the server answered {exc.status}: {exc.message}; try again later, or ask its administrators",
            ExitCode.SERVER,
        )
    return str(exc), ExitCode.SERVER


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (sys.argv[1:] by default); returns the exit code."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=list(argv) if argv is not None else None, prog_name="omlpy", standalone_mode=False)
    except UsageError as exc:
        context = getattr(exc, "ctx", None)
        name = context.command_path if context is not None else "omlpy"
        warn(f"{name}: {exc.format_message()} (see `{name} --help`)")  # type: ignore[attr-defined]
        return ExitCode.USAGE
    except ClickException as exc:
        warn(f"omlpy: {exc.format_message()}")  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", 1))
    except (typer.Abort, KeyboardInterrupt):
        warn("omlpy: interrupted")
        return 130
    except OmlpyError as exc:
        message, code = explain(exc)
        warn(f"omlpy: {message}")
        return code
    except BrokenPipeError:
        return ExitCode.OK  # the reader stopped reading (`omlpy result JOB | head`): not an error of ours
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        warn(f"omlpy: cannot use{where}: {exc.strerror or exc}")
        return ExitCode.USAGE
    return code if isinstance(code, int) else ExitCode.OK


def main() -> None:
    sys.exit(run())
