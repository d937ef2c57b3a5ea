"""The one error type of the OML client."""

from __future__ import annotations


class OMLError(Exception):
    """A call to OML that did not give the answer asked for.

    `permanent` says whether trying the same call again could help: a script error or a bad request is
    permanent; a connection error, 429, 502/503/504 or Oracle's "Unable to reserve ... resource" is not.
    `outcome_unknown` is set when a POST may or may not have reached the server (a timeout after sending):
    such a call must never be repeated blindly.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        http_status: int | None = None,
        outcome_unknown: bool = False,
        latency_ms: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.http_status = http_status
        self.outcome_unknown = outcome_unknown
        self.latency_ms = latency_ms

    def __str__(self) -> str:
        status = f"HTTP {self.http_status}: " if self.http_status else ""
        return f"{status}{self.message}"
