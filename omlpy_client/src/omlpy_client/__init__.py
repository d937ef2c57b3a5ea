"""The OMLPy Dashboard's Python client: `Client(url, token)`, jobs you can follow, and their results.

It speaks only to the dashboard's JSON API under /api/v1/. The `omlpy` command line is built on it
(omlpy_client.cli).
"""

__version__ = "0.1.0"

from .client import Client, Connection, Script
from .errors import (
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
    ServerError,
    UnreachableError,
    WaitTimeoutError,
)
from .job import RESULT_FORMATS, TERMINAL_STATES, Job

__all__ = [
    "RESULT_FORMATS",
    "TERMINAL_STATES",
    "ApiError",
    "AuthenticationError",
    "Client",
    "ConfigurationError",
    "ConflictError",
    "Connection",
    "InvalidRequestError",
    "Job",
    "JobNotSucceededError",
    "NotFoundError",
    "NotSignedInError",
    "OmlpyError",
    "PermissionDeniedError",
    "Script",
    "ServerError",
    "UnreachableError",
    "WaitTimeoutError",
    "__version__",
]
