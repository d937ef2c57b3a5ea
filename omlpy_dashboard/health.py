"""/healthz: answers 200 when the database and the broker answer, 503 naming what failed otherwise."""

import logging

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_broker() -> None:
    from omlpy_dashboard.celery import app

    with app.connection_for_write() as conn:
        # One attempt, short timeout: a health check must answer quickly.
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
        if conn.transport_cls == "filesystem" or conn.transport.driver_type == "filesystem":
            # The filesystem transport "connects" to anything; its folder must really be writable.
            import os

            folder = conn.transport_options["data_folder_out"]
            if not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
                raise OSError(f"broker folder {folder} is not writable")


@never_cache
@require_GET
def healthz(request):
    checks = {}
    failed = []
    for name, check in (("database", _check_database), ("broker", _check_broker)):
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:  # any failure of a dependency is reported, not raised
            logger.warning("health check %s failed: %s", name, exc.__class__.__name__)
            checks[name] = f"failed: {exc.__class__.__name__}"
            failed.append(name)
    status = 503 if failed else 200
    return JsonResponse({"status": "ok" if not failed else "unavailable", "checks": checks}, status=status)
