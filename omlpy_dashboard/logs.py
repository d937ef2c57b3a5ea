"""Log lines an operator can search: one JSON object per line in production, readable text in development.

- Every line carries the context it was logged in: `request_id` inside a web request, `job` (the job's
  public uuid) while a worker works on one job. The context lives in a contextvar, so requests served side
  by side and the sweep's threads never see each other's.
- `RequestLogMiddleware` gives each request its id (a safe incoming X-Request-ID, or a new one), returns it
  in the X-Request-ID header, and logs one `request finished` line with method, path, status, duration and
  user. Never the query string, headers or cookies: they can hold secrets.
- `JsonLineFormatter` writes the JSON lines (settings.LOG_FORMAT "json"), `TextFormatter` the text.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "log_context", default=MappingProxyType({})
)


def _as_strings(fields: Mapping[str, object]) -> dict[str, str]:
    return {name: str(value) for name, value in fields.items() if value is not None}


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add `fields` to every line logged inside the block, and undo any `log_bind` made inside it on the way
    out. Also a decorator: `@log_context()` gives each call a context of its own."""
    token = _context.set({**_context.get(), **_as_strings(fields)})
    try:
        yield
    finally:
        _context.reset(token)


def log_bind(**fields: object) -> None:
    """Add `fields` to the lines logged from here to the end of the enclosing `log_context`."""
    _context.set({**_context.get(), **_as_strings(fields)})


class ContextFilter(logging.Filter):
    """Copies the current context onto each record; a field the call passed itself (`extra=`) wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        if not hasattr(record, "request_id"):
            # Django logs a 4xx or 5xx answer after the middleware has returned, naming the request.
            meta = getattr(getattr(record, "request", None), "META", None)
            if isinstance(meta, dict) and REQUEST_ID_META in meta:
                record.request_id = meta[REQUEST_ID_META]
        return True


# Attributes libraries attach to records that must never be written out: Django's `request` (its repr holds
# the query string) and runserver's `server_time`.
_NEVER_WRITTEN = ("request", "server_time")


def _utc_iso(created: float) -> str:
    return datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonLineFormatter(JsonFormatter):
    """`{"time", "level", "logger", "message", "process", "pid", ...}`: the context and any `extra=` fields
    follow, and a traceback comes as `exc_info`, inside the one line."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s %(processName)s %(process)d",
            rename_fields={"levelname": "level", "name": "logger", "processName": "process", "process": "pid"},
            reserved_attrs=[*RESERVED_ATTRS, *_NEVER_WRITTEN],
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["time"] = _utc_iso(record.created)
        super().add_fields(log_data, record, message_dict)


class TextFormatter(logging.Formatter):
    """The development line, with the context and request fields appended as `name=value`."""

    FIELDS = ("request_id", "job", "method", "path", "status", "duration_ms", "user_id")

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = [f"{name}={getattr(record, name)}" for name in self.FIELDS if getattr(record, name, None) is not None]
        return f"{line} [{' '.join(fields)}]" if fields else line


LOG_FORMATS = ("json", "text")


def log_format_from(value: str | None, *, debug: bool) -> str:
    """LOG_FORMAT's value, checked: json or text; unset, text with DEBUG on and json otherwise."""
    chosen = (value or "").strip().lower() or ("text" if debug else "json")
    if chosen not in LOG_FORMATS:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, not {value!r}.")
    return chosen


def gunicorn_logconfig(log_format: str) -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its own lines (start, worker boots, timeouts) in JSON too. Text needs
    nothing: gunicorn's own format is readable."""
    if log_format != "json":
        return {}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonLineFormatter"}},
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["json"], "level": "INFO"},
        "loggers": {
            "gunicorn.error": {"handlers": ["json"], "propagate": False},
            # A logging configuration switches gunicorn's access log on; Django already logs each request.
            "gunicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
        },
    }


# --- Requests ---------------------------------------------------------------------------------------------

REQUEST_ID_HEADER = "X-Request-ID"
# Where the request keeps its id (a server-defined WSGI environ key), for lines logged outside the middleware.
REQUEST_ID_META = "omlpy.request_id"
# An incoming id is kept only if it cannot break a log line or a header, nor carry much of anything.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Probes run every few seconds: their lines, and static files', are logged at DEBUG.
QUIET_PATHS = frozenset({"/livez", "/healthz", "/readyz"})
# A URL argument with one of these in its name is a secret (the password reset link's token).
_SECRET_ARGUMENTS = ("token", "password", "secret")

request_logger = logging.getLogger("omlpy_dashboard.requests")


def request_id_from(header: str | None) -> str:
    """The caller's request id if it looks safe, otherwise a new one."""
    if header and _SAFE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def loggable_path(request: HttpRequest) -> str:
    """The path without the query string, and with secret URL arguments replaced."""
    path = request.path
    match = getattr(request, "resolver_match", None)
    arguments = match.kwargs if match is not None else {}
    for name, value in arguments.items():
        if isinstance(value, str) and value and any(word in name.lower() for word in _SECRET_ARGUMENTS):
            path = path.replace(value, "[redacted]")
    return path


def _user_id(request: HttpRequest, status: int) -> int | None:
    # Set by AuthenticationMiddleware or the API's token check, and already loaded by the answer's time; absent
    # when a middleware answered first. After a 5xx it may be the very lookup that failed (the database is
    # down): asking again would only wait on the database a second time.
    user = getattr(request, "user", None)
    if user is None or status >= 500:
        return None
    return user.pk if user.is_authenticated else None


class RequestLogMiddleware:
    """First in MIDDLEWARE, so that every line of the request carries its id and its duration covers the
    rest. A streaming answer's duration ends when its body starts."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        from django.conf import settings

        self.get_response = get_response
        self.static_prefix = "/" + settings.STATIC_URL.lstrip("/")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.monotonic()
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        request.META[REQUEST_ID_META] = request_id
        with log_context(request_id=request_id):
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            quiet = request.path_info in QUIET_PATHS or request.path_info.startswith(self.static_prefix)
            level = logging.DEBUG if quiet else logging.INFO
            if request_logger.isEnabledFor(level):
                request_logger.log(level, "request finished", extra=self._fields(request, response, started))
        return response

    @staticmethod
    def _fields(request: HttpRequest, response: HttpResponse, started: float) -> dict[str, object]:
        fields: dict[str, object] = {
            "method": request.method,
            "path": loggable_path(request),
            "status": response.status_code,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
        }
        user_id = _user_id(request, response.status_code)
        if user_id is not None:
            fields["user_id"] = user_id
        return fields
