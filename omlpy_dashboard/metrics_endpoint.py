"""`/metrics`: the Prometheus text format, for a scraper holding METRICS_TOKEN.

Off (404) when no token is configured; 401 without the right `Authorization: Bearer` token. Answered by a
middleware before host validation and the https redirect, as the health probes are: Prometheus scrapes each
web process over the internal network, by address. Every process writes its counters to the database
(metrics.store), so any web process answers for all of them; gauges are read at scrape time (jobs.selectors.gauges).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Iterable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from metrics import store

from . import health

PATH = "/metrics"


def _sweep_family() -> Iterable[Metric]:
    completed = health.sweep_completed_at()
    if completed is not None:
        yield GaugeMetricFamily(
            "omlpy_sweep_last_success_timestamp_seconds",
            "When a poll sweep last ran to its end (Unix time).",
            completed,
        )


class _Collector:
    def collect(self) -> Iterable[Metric]:
        from jobs.selectors import gauges

        yield from store.families()
        yield from gauges.families()
        yield from _sweep_family()


def _authorized(request: HttpRequest) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), settings.METRICS_TOKEN.encode())


def metrics(request: HttpRequest) -> HttpResponse:
    if not settings.METRICS_TOKEN:
        return HttpResponse("Not found.\n", status=404, content_type="text/plain")
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    if not _authorized(request):
        return HttpResponse(
            "A bearer token is required.\n",
            status=401,
            content_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    # What this process recorded since its last flush is in the answer too.
    store.flush_quietly_if_pending()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    started = time.monotonic()
    body = generate_latest(registry)
    response = HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    response["X-Scrape-Duration-Ms"] = f"{(time.monotonic() - started) * 1000:.1f}"
    return response


class MetricsMiddleware:
    """Answers /metrics before ALLOWED_HOSTS, the https redirect, sessions and sign-in."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info != PATH:
            return self.get_response(request)
        return metrics(request)
