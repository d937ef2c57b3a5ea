"""Requests refused before any view could read them, and the page that explains a refusal.

Django refuses a body larger than DATA_UPLOAD_MAX_MEMORY_SIZE when something first reads it (RequestDataTooBig,
a SuspiciousOperation) and answers through `handler400`. `bad_request` is that handler: 413 with the limit in
the message for an oversized body (JSON under /api/, a page elsewhere), Django's own 400 for anything else.
The JSON API and the embedded engine read their bodies themselves and answer the same 413 in their own shape.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import defaults


def body_too_large_message() -> str:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return f"The request body is larger than the limit of {limit} bytes ({limit / 2**20:.1f} MiB)."


def refusal_page(request: HttpRequest, message: str, *, status: int = 400, title: str = "") -> HttpResponse:
    """A page that says why the request was refused (templates/400.html)."""
    return render(request, "400.html", {"message": message, "title": title or "Not a valid request"}, status=status)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """The project's handler400."""
    if not isinstance(exception, RequestDataTooBig):
        return defaults.bad_request(request, exception)
    message = body_too_large_message()
    if request.path_info.startswith("/api/"):
        return JsonResponse({"detail": message}, status=413)
    return refusal_page(request, message, status=413, title="Too large")
