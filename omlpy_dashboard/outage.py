"""While the database cannot be reached, pages and the API answer 503 with Retry-After instead of 500.

A database error can be raised anywhere: in a view, in a template, or inside middleware (loading the session,
the signed-in user), where no `process_exception` sees it. Django sends every uncaught exception to the
`handler500` view with the exception still being handled, so `server_error` there covers them all. The JSON
API catches exceptions itself (django-ninja's handlers), so `jobs.api.jobs` registers `database_unavailable`
for the same errors.
"""

from __future__ import annotations

import sys

from django.db.utils import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views import defaults

# Long enough for a database failover or restart, short enough that people come back soon.
RETRY_AFTER_SECONDS = 30


def _database_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OperationalError, InterfaceError]
    try:
        import psycopg
    except ImportError:  # SQLite-only installations
        return tuple(errors)
    # Django wraps the driver's errors, but one raised outside a query (closing a broken connection) is not.
    return (*errors, psycopg.OperationalError, psycopg.InterfaceError)


DATABASE_ERRORS = _database_errors()


def is_database_outage(exc: BaseException | None) -> bool:
    """Whether `exc`, or an exception it was raised from or while handling, says the database is unreachable."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, DATABASE_ERRORS):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def database_unavailable(request: HttpRequest, exc: BaseException | None = None) -> HttpResponse:
    """503 with Retry-After: JSON `{"detail": ...}` under /api/, a short page elsewhere; never a traceback."""
    if request.path_info.startswith("/api/"):
        detail = f"The database is unavailable. Try again in {RETRY_AFTER_SECONDS} seconds."
        response: HttpResponse = JsonResponse({"detail": detail}, status=503)
    else:
        page = render_to_string("503.html", {"retry_after": RETRY_AFTER_SECONDS})
        response = HttpResponse(page, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """The project's handler500: 503 during a database outage, Django's own 500 page otherwise."""
    if is_database_outage(sys.exc_info()[1]):
        return database_unavailable(request)
    return defaults.server_error(request)
