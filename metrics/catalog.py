"""Every counter and histogram the processes record, in one place: name, help, labels and buckets.

Counters and histograms are monotonic: they are kept in the database (metrics.models.MetricCounter), added to
in batches (metrics.recorder, metrics.store), and never derived from rows a purge deletes. Gauges are read
from the database at scrape time instead (jobs.selectors.gauges). Adding a counter is one line here, then
`recorder.inc("omlpy_name_total", channel=..., outcome=...)` where it happens.

Label values must be bounded: states, operations, HTTP status codes, channels; never ids or free text.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "omlpy_"


@dataclass(frozen=True)
class Counter:
    name: str
    help: str
    labels: tuple[str, ...] = ()
    # Label values shown (at 0) before anything was counted, so that rules and dashboards find the series.
    initial: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...]
    labels: tuple[str, ...] = ()


# Requests to OML: milliseconds for a status request, up to a minute for a large submission.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Jobs run from seconds to hours.
JOB_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
# Detection lag: the poll schedule aims at a second or two, and never waits more than its cap.
LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

OML_OPERATIONS = ("submit", "status", "result", "delete", "token", "scripts")

METRICS: tuple[Counter | Histogram, ...] = (
    Counter("omlpy_job_transitions_total", "Job state changes, by the state moved to.", ("to_state",)),
    Counter(
        "omlpy_oml_requests_total",
        "HTTP requests to OML, by operation and answer (the HTTP status, or 'error' when none came).",
        ("operation", "code"),
    ),
    Histogram(
        "omlpy_oml_request_duration_seconds",
        "Time of HTTP requests to OML, by operation.",
        REQUEST_BUCKETS,
        ("operation",),
    ),
    Histogram(
        "omlpy_job_oml_duration_seconds",
        "Time a job spent in OML (jobs.selectors.timing): the middle of its bounds, after the last status request OML "
        "answered 202 and before the 302 (synchronous calls: the call's duration).",
        JOB_BUCKETS,
    ),
    Histogram(
        "omlpy_job_detection_lag_seconds",
        "Upper bound of the time between OML finishing a job and the dashboard seeing it finished "
        "(jobs.selectors.timing): "
        "the 302's time minus the last 202's (minus OML's 201 when the first status request found it finished).",
        LAG_BUCKETS,
    ),
    Counter("omlpy_polls_total", "Status requests sent to OML for pending jobs (retries included)."),
    Counter("omlpy_sweeps_total", "Poll sweeps run to their end."),
    Counter(
        "omlpy_purged_total",
        "What retention purges removed: result bodies ('results'), their bytes ('result_bytes'), job rows ('jobs').",
        ("what",),
        (("results",), ("result_bytes",), ("jobs",)),
    ),
)

NOTIFICATION_CHANNELS = ("email", "webhook", "inapp", "apprise")
NOTIFICATION_OUTCOMES = ("delivered", "retry", "failed")

METRICS += (
    Counter(
        "omlpy_notifications_total",
        "Notification delivery attempts, by channel and outcome: delivered, retry (failed, to be tried again), "
        "failed (given up after NOTIFY_MAX_ATTEMPTS).",
        ("channel", "outcome"),
        tuple((channel, outcome) for channel in NOTIFICATION_CHANNELS for outcome in NOTIFICATION_OUTCOMES),
    ),
)

BY_NAME: dict[str, Counter | Histogram] = {metric.name: metric for metric in METRICS}


def check(name: str, labels: dict[str, str]) -> Counter | Histogram:
    """The metric called `name`, after checking that `labels` are exactly its labels."""
    metric = BY_NAME.get(name)
    if metric is None:
        raise KeyError(f"{name} is not in metrics.catalog.METRICS")
    if set(labels) != set(metric.labels):
        raise ValueError(f"{name} takes the labels {metric.labels}, not {tuple(sorted(labels))}")
    return metric
