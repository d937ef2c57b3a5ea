"""Where the counters of metrics.recorder are kept: flushed to MetricCounter, read back for a scrape."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from omlpy_dashboard.fastsql import add_to_rows

from . import catalog, recorder
from .models import MetricCounter

logger = logging.getLogger(__name__)


def flush() -> int:
    """Add everything this process recorded since the last flush to the database; returns the series written.

    Rows go in the order of their key, so that two processes flushing at once lock the same rows in the same
    order (no deadlock). If the database cannot take them, they are kept for the next flush. One statement adds
    to many series, and creates those seen for the first time (omlpy_dashboard.fastsql.add_to_rows).
    """
    taken = recorder.drain()
    if not taken:
        return 0
    items = sorted(taken.items())
    try:
        with transaction.atomic():
            add_to_rows(MetricCounter, ("name", "labels"), ("value",), [(*key, amount) for key, amount in items])
    except Exception:
        recorder.restore(taken)
        raise
    return len(items)


def flush_quietly_if_pending(*args: Any, **kwargs: Any) -> None:
    """flush() for signal receivers (end of a task, of a request, of a process): a failure is logged, and the
    counts stay pending for the next flush."""
    if not recorder.has_pending():
        return
    try:
        flush()
    except Exception as exc:
        logger.warning("metrics not flushed yet (%s: %s)", exc.__class__.__name__, exc)


def _stored() -> dict[str, list[tuple[dict[str, str], float]]]:
    series: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for name, labels, value in MetricCounter.objects.values_list("name", "labels", "value"):
        series[name].append((json.loads(labels), value))
    return series


def families() -> Iterable[Metric]:
    """Every counter and histogram of the catalog with its stored totals (one query)."""
    stored = _stored()
    for metric in catalog.METRICS:
        if isinstance(metric, catalog.Counter):
            family = CounterMetricFamily(metric.name, metric.help, labels=list(metric.labels))
            rows = stored.get(metric.name, [])
            if not metric.labels and not rows:
                rows = [({}, 0.0)]
            seen = {tuple(labels.get(name, "") for name in metric.labels) for labels, _ in rows}
            rows += [
                (dict(zip(metric.labels, values, strict=True)), 0.0) for values in metric.initial if values not in seen
            ]
            for labels, value in sorted(rows, key=lambda row: sorted(row[0].items())):
                family.add_metric([labels.get(name, "") for name in metric.labels], value)
            yield family
        else:
            yield _histogram(metric, stored)


def _histogram(
    metric: catalog.Histogram, stored: dict[str, list[tuple[dict[str, str], float]]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(metric.name, metric.help, labels=list(metric.labels))
    per_series: dict[tuple[str, ...], dict] = defaultdict(lambda: {"buckets": defaultdict(float), "sum": 0.0})
    for labels, value in stored.get(f"{metric.name}_bucket", []):
        bound = labels.pop("le", "+Inf")
        per_series[tuple(labels.get(name, "") for name in metric.labels)]["buckets"][bound] += value
    for labels, value in stored.get(f"{metric.name}_sum", []):
        per_series[tuple(labels.get(name, "") for name in metric.labels)]["sum"] = value
    if not metric.labels and not per_series:
        per_series[()]  # a histogram without labels is shown from the start, empty
    bounds = [repr(float(bound)) for bound in metric.buckets] + ["+Inf"]
    for key in sorted(per_series):
        data = per_series[key]
        running = 0.0
        buckets = []
        for bound in bounds:
            running += data["buckets"].get(bound, 0.0)
            buckets.append((bound, running))
        family.add_metric(list(key), buckets, data["sum"])
    return family
