"""Errors the engine answers with, as OML does: an HTTP status and a JSON body with errorCode and errorMessage.

Only code 1024 (output over the limit) is Oracle's; the other codes are the engine's own.
"""

from dataclasses import dataclass

INVALID_REQUEST = 1000
SCRIPT_NOT_FOUND = 1001
INVALID_INPUT_QUERY = 1002
SCRIPT_ERROR = 1010
OUTPUT_TOO_LONG = 1024
LIMIT_EXCEEDED = 1100
ENGINE_FAILURE = 1101
SANDBOX_UNAVAILABLE = 1102
JOB_NOT_FOUND = 1200
UNAUTHORIZED = 1401
TOO_MANY_REQUESTS = 1429
SERVICE_UNAVAILABLE = 1503


@dataclass(eq=False)
class EngineError(Exception):
    """Raised anywhere in the engine; views turn it into the JSON error answer."""

    status: int
    code: int
    message: str
    retry_after: int | None = None  # seconds, sent as Retry-After (429 answers)

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict:
        return {"errorCode": self.code, "errorMessage": self.message}


def bad_request(message: str, code: int = INVALID_REQUEST) -> EngineError:
    return EngineError(400, code, message)


def unauthorized(message: str) -> EngineError:
    return EngineError(401, UNAUTHORIZED, message)
