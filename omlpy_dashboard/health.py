"""Health endpoints, and the age of the last completed poll sweep.

- `/livez`: the process answers. No I/O, so a slow database never gets a live web process restarted.
- `/readyz`: the web process can serve: database and broker answer (503 with the reason otherwise).
- `/healthz`: the same checks, and in its body the age of the last completed poll sweep, for people and
  dashboards. The sweep's age never decides the web's health: one dead beat must not take every web replica
  out of service. It decides the worker's and beat's probes instead (`manage.py sweep_probe`).

Probes come from load balancers and kubelets that address the pod by IP, so `HealthCheckMiddleware` answers
these paths before host validation and the https redirect.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

SWEEP_COMPLETED_KEY = "health:sweep-completed-at"


def sweep_completed(at: float | None = None) -> None:
    """Record that a poll sweep ran to its end (called by the worker after every sweep)."""
    cache.set(SWEEP_COMPLETED_KEY, time.time() if at is None else at, timeout=None)


def sweep_completed_at() -> float | None:
    """When the last poll sweep ran to its end (Unix time), from the shared cache; None if none was recorded."""
    completed = cache.get(SWEEP_COMPLETED_KEY)
    return None if completed is None else float(completed)


def sweep_age() -> float | None:
    """Seconds since the last completed poll sweep, from the shared cache; None if none was recorded."""
    completed = sweep_completed_at()
    return None if completed is None else max(0.0, time.time() - completed)


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_broker() -> None:
    from omlpy_dashboard.celery import app

    with app.connection_for_write() as conn:
        # One attempt, short timeout: a health check must answer quickly.
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
        if conn.transport.driver_type == "filesystem":
            # The filesystem transport "connects" to anything; its folder must really be writable.
            folder = conn.transport_options["data_folder_out"]
            if not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
                raise OSError(f"broker folder {folder} is not writable")


CHECKS: tuple[tuple[str, Callable[[], None]], ...] = (("database", _check_database), ("broker", _check_broker))


def _run_checks() -> tuple[dict[str, str], list[str]]:
    checks: dict[str, str] = {}
    failed: list[str] = []
    for name, check in CHECKS:
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:  # any failure of a dependency is reported, not raised
            logger.warning("health check %s failed: %s: %s", name, exc.__class__.__name__, exc)
            checks[name] = f"failed: {exc.__class__.__name__}"
            failed.append(name)
    return checks, failed


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


def livez(request: HttpRequest) -> HttpResponse:
    return _no_store(JsonResponse({"status": "ok"}))


def readyz(request: HttpRequest) -> HttpResponse:
    checks, failed = _run_checks()
    body: dict[str, object] = {"status": "ready" if not failed else "not ready", "checks": checks}
    if failed:
        body["reason"] = "; ".join(f"{name} {checks[name]}" for name in failed)
    return _no_store(JsonResponse(body, status=503 if failed else 200))


def healthz(request: HttpRequest) -> HttpResponse:
    checks, failed = _run_checks()
    try:
        age = sweep_age()
    except Exception as exc:  # the cache is down: say so, the status stays the database's and broker's
        logger.warning("sweep age unavailable: %s", exc.__class__.__name__)
        age = None
    body = {
        "status": "ok" if not failed else "unavailable",
        "checks": checks,
        "sweep_age_seconds": None if age is None else round(age, 3),
    }
    return _no_store(JsonResponse(body, status=503 if failed else 200))


ENDPOINTS: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/livez": livez,
    "/readyz": readyz,
    "/healthz": healthz,
}


class HealthCheckMiddleware:
    """Answers the health paths first: before ALLOWED_HOSTS, the https redirect, sessions and sign-in."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        endpoint = ENDPOINTS.get(request.path_info)
        if endpoint is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
        return endpoint(request)
