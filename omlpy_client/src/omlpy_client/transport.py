"""HTTP to the dashboard's API: the token on every request, errors as exceptions, and retries that are safe.

What is retried, at most `retries` times:
- a 503 answer, after the seconds its `Retry-After` names (or the backoff when it names none); a server that
  asks to wait longer than MAX_RETRY_AFTER is reported at once;
- a 502 or 504 from a proxy, and a connection that failed or timed out, for a request that may be repeated: a
  GET, a request marked idempotent, or one carrying an `Idempotency-Key` (a submission, which the server
  answers with the first job when it sees the key again);
- a connection that was never made (refused, no such host), for any request, since nothing was sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError

from . import __version__
from .errors import (
    ApiError,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    UnreachableError,
)

API_PREFIX = "/api/v1"
CONNECT_TIMEOUT = 10.0
MAX_RETRY_AFTER = 300.0
_ERRORS: dict[int, type[ApiError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: InvalidRequestError,
}


def server_url(url: str) -> str:
    """The server's base URL as given by a user: no trailing slash, no /api/v1."""
    url = url.strip().rstrip("/")
    return url.removesuffix(API_PREFIX).rstrip("/")


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _never_sent(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError)


def _describe(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return "the connection timed out"
    if isinstance(exc, requests.ReadTimeout):
        return "no answer in time"
    text = str(exc)
    for known in ("Connection refused", "Name or service not known", "Connection reset", "Remote end closed"):
        if known in text:
            return known.lower()
    return type(exc).__name__


def error_for(response: requests.Response) -> ApiError:
    """The exception for an error answer, with the server's `detail` and per-field `errors` when it sent them."""
    status = response.status_code
    detail = ""
    errors: dict[str, list[str]] = {}
    try:
        body = response.json()
    except (ValueError, requests.RequestException):
        body = None
    if isinstance(body, dict):
        detail = str(body.get("detail") or body.get("errorMessage") or "")
        raw_errors = body.get("errors")
        if isinstance(raw_errors, dict):
            errors = {str(k): [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in raw_errors.items()}
    if not detail:
        detail = f"HTTP {status} {response.reason or ''}".strip()
    cls = _ERRORS.get(status, ServerError if status >= 500 else ApiError)
    return cls(status, detail, errors, url=response.url)


class Transport:
    """A requests session for one server and token."""

    def __init__(
        self, url: str, token: str, *, timeout: float = 60.0, retries: int = 3, retry_backoff: float = 0.5
    ) -> None:
        self.url = server_url(url)
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.timeout = timeout
        self.retries = max(0, retries)
        self.retry_backoff = max(0.0, retry_backoff)
        self.session = requests.Session()
        self.session.headers.update(
            {"Authorization": f"Bearer {token}", "Accept": "application/json", "User-Agent": f"omlpy/{__version__}"}
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        idempotent: bool = False,
    ) -> requests.Response:
        """The answer to `method path` (path below /api/v1); an exception for any error answer."""
        url = f"{self.url}{API_PREFIX}{path}"
        repeatable = idempotent or method in ("GET", "HEAD") or bool(headers and "Idempotency-Key" in headers)
        data = None if body is None else json.dumps(body)
        sent_headers = {**(headers or {}), **({"Content-Type": "application/json"} if data is not None else {})}
        attempt = 0
        while True:
            wait = self.retry_backoff * (2**attempt)
            try:
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    data=data,
                    headers=sent_headers,
                    stream=stream,
                    timeout=(min(CONNECT_TIMEOUT, self.timeout), self.timeout),
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                if attempt < self.retries and (repeatable or _never_sent(exc)):
                    attempt += 1
                    time.sleep(wait)
                    continue
                raise UnreachableError(f"cannot reach {self.url}: {_describe(exc)}") from None
            status = response.status_code
            if attempt < self.retries and (status == 503 or (status in (502, 504) and repeatable)):
                asked = _retry_after(response.headers.get("Retry-After"))
                if asked is None or asked <= MAX_RETRY_AFTER:
                    response.close()
                    attempt += 1
                    time.sleep(wait if asked is None else asked)
                    continue
            if status >= 400:
                error = error_for(response)
                response.close()
                raise error
            if 300 <= status < 400:
                response.close()
                raise ServerError(status, f"unexpected redirect to {response.headers.get('Location', '?')}", url=url)
            return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ServerError(response.status_code, "the answer is not JSON", url=response.url) from None

    def close(self) -> None:
        self.session.close()
