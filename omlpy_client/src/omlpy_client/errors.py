"""What can go wrong, as exceptions whose message is a sentence a user can act on.

Answers of the API map to ApiError subclasses by status, carrying the server's own words (`detail`) and, for an
invalid request, the message of each field (`errors`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .job import Job


def first_line(text: str) -> str:
    """The first line of a message that may be long (OML's script errors carry the script's traceback)."""
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


class OmlpyError(Exception):
    """Every error this package raises."""


class ConfigurationError(OmlpyError):
    """No server or token is configured, or a setting has a value that cannot be used."""


class NotSignedInError(ConfigurationError):
    """No server URL or no API token: `omlpy login` has not run, and OMLPY_URL / OMLPY_TOKEN are not set."""


class UnreachableError(OmlpyError):
    """The server could not be reached, or did not answer in time, even after retrying."""


class ApiError(OmlpyError):
    """The API refused a request or failed; `status` is the HTTP status, `detail` the server's message."""

    def __init__(self, status: int, detail: str, errors: dict[str, list[str]] | None = None, *, url: str = ""):
        self.status = status
        self.detail = detail
        self.errors = errors or {}
        self.url = url
        super().__init__(self.message)

    @property
    def message(self) -> str:
        fields = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in self.errors.items())
        return f"{self.detail} ({fields})" if fields else self.detail


class InvalidRequestError(ApiError):
    """400 or 422: the request is not valid; `errors` names each field's problem."""


class AuthenticationError(ApiError):
    """401: no token, or one the server does not accept (unknown, revoked, expired)."""


class PermissionDeniedError(ApiError):
    """403: the user or the token may not do this (a read-only role or token, another user's job)."""


class NotFoundError(ApiError):
    """404: no such job (or one the user may not see), or no result."""


class ConflictError(ApiError):
    """409: the request conflicts with the job's state (cancelling a job that has ended)."""


class ServerError(ApiError):
    """5xx, or an answer the client does not understand, after retrying what may be retried."""


class WaitTimeoutError(OmlpyError, TimeoutError):
    """A job did not end within the time given to wait for it."""

    def __init__(self, job: Job, seconds: float):
        self.job = job
        self.seconds = seconds
        super().__init__(f"job {job.id} is still {job.state} after {seconds:g} s")


class JobNotSucceededError(OmlpyError):
    """A job's result was asked for, but the job failed, timed out, was cancelled, or has not ended."""

    def __init__(self, job: Job):
        self.job = job
        if job.is_terminal:
            reason = f": {first_line(job.last_error)}" if job.last_error else ""
            message = f"job {job.id} ended {job.state}{reason}; it has no result (`omlpy show {job.id}` says more)"
        else:
            message = f"job {job.id} has not ended yet ({job.state}); it has no result yet"
        super().__init__(message)
