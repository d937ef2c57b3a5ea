"""When to ask OML about a job next.

Two schedules:
- Backoff, for a script with no history: wait a fixed share of the job's age (factor - 1), between the
  initial delay and the cap. A job found finished was then at most a third of its age late (factor 1.5).
- Learned, for a script that ran before: its past durations (their median and the spread of their
  logarithm, a lognormal fit) say how likely it is to have finished by any age, and polls are placed by the
  quantiles of that distribution. None until the START_QUANTILE of past durations (only that share of runs
  finishes earlier: they are found at that first look), then one every `lag target` seconds through the
  bulk and the late tail up to the END_QUANTILE, then backoff from there. A script whose window opens
  late (GUARD_AFTER) gets one look half-way there first, to catch a run that became much faster.
Neither ever waits past the job's deadline.

Why these quantiles: a poll costs as much wherever it is, but a poll only happens while the job still runs,
so polling densely early (most runs still going, few finishing) costs the most for the fewest detections,
while the late tail is cheap (few runs left). Leaving the first START_QUANTILE of runs to the first look
keeps the 95th percentile of detection lag at the spacing's, as long as that share stays well under 5 %.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from statistics import NormalDist

from django.conf import settings

# The window of likely finish times: median * exp(+-Z * spread) holds 95 % of lognormal durations.
Z = 1.96
MIN_SPREAD = 0.02
MIN_RUNS = 3
HISTORY_RUNS = 30
# The learned schedule's dense polling runs between these quantiles of past durations.
START_QUANTILE = 0.04
END_QUANTILE = 0.999
# Seconds: a window opening later than this gets one early look half-way to it.
GUARD_AFTER = 180.0

_NORMAL = NormalDist()
_START_Z = _NORMAL.inv_cdf(START_QUANTILE)
_END_Z = _NORMAL.inv_cdf(END_QUANTILE)


@dataclass(frozen=True)
class Expectation:
    median: float
    spread: float

    @property
    def window(self) -> tuple[float, float]:
        """The durations that held 95 % of past runs."""
        return self.median * math.exp(-Z * self.spread), self.median * math.exp(Z * self.spread)

    def quantile(self, share: float) -> float:
        """The duration by which `share` of runs finish (0 < share < 1), by the lognormal fit."""
        return self.median * math.exp(_NORMAL.inv_cdf(share) * self.spread)

    @property
    def dense(self) -> tuple[float, float]:
        """Where the learned schedule polls every `lag target` seconds: START_QUANTILE to END_QUANTILE."""
        return self.median * math.exp(_START_Z * self.spread), self.median * math.exp(_END_Z * self.spread)


def learn(durations: list[float]) -> Expectation | None:
    """Median and log-spread of past durations (seconds); None with too little history."""
    usable = [d for d in durations if d and d > 0]
    if len(usable) < MIN_RUNS:
        return None
    logs = [math.log(d) for d in usable]
    spread = statistics.pstdev(logs) if len(logs) > 1 else 0.0
    return Expectation(median=math.exp(statistics.median(logs)), spread=max(spread, MIN_SPREAD))


def backoff_delay(age: float) -> float:
    return min(max(age * (settings.JOBS_POLL_FACTOR - 1), settings.JOBS_POLL_INITIAL), settings.JOBS_POLL_CAP)


def learned_delay(age: float, expected: Expectation) -> float:
    """The next wait of the learned schedule, by the quantiles of past durations (see the module's text)."""
    opens, closes = expected.dense
    lag = settings.JOBS_POLL_LAG_TARGET
    if age < opens - lag:
        guard = opens / 2
        if opens > GUARD_AFTER and age < guard - lag:
            # One early look catches a long script that has become much faster than it used to be.
            return max(guard - age, settings.JOBS_POLL_INITIAL)
        return max(opens - age, settings.JOBS_POLL_INITIAL)
    if age < closes:
        return max(lag, settings.JOBS_POLL_INITIAL)
    # Later than nearly every past run: back off from there (a run this late is often much later).
    overdue = age - closes
    return min(max(overdue * (settings.JOBS_POLL_FACTOR - 1), lag), settings.JOBS_POLL_CAP)


def next_delay(*, age: float, expected: Expectation | None, until_deadline: float | None = None) -> float:
    """Seconds until the next status request for a job `age` seconds after OML accepted it."""
    delay = learned_delay(age, expected) if expected else backoff_delay(age)
    if until_deadline is not None:
        delay = min(delay, max(until_deadline, settings.JOBS_POLL_INITIAL))
    return delay


def first_delay(expected: Expectation | None) -> float:
    return next_delay(age=0.0, expected=expected)


# --- The poll log -------------------------------------------------------------------------------------
#
# Each job keeps its status requests in a small JSON value instead of a row per poll:
#   {"first": [entry, ...], "last": [entry, ...], "dropped": n}
# `first` holds the first `first` polls, `last` the latest `last` ones, and `dropped` counts those between
# that were let go. An entry is a compact list: [unix time (ms precision), HTTP status or null, OML's `status`
# text or the error, OML's elapsedTime in seconds or null, latency in ms or null].

POLL_LOG_FIELDS = ("at", "http_status", "oml_status", "elapsed_seconds", "latency_ms")


def poll_log_entry(
    *,
    at: float,
    http_status: int | None,
    oml_status: str,
    elapsed_seconds: float | None,
    latency_ms: int | None,
) -> list:
    """One status request, as the poll log keeps it (`at`: unix seconds)."""
    return [round(at, 3), http_status, oml_status[:200], elapsed_seconds, latency_ms]


def poll_log_append(log: dict | None, entry: list, *, first: int, last: int) -> dict:
    """The poll log with `entry` added: a pure function of the old log and the entry, so that the caller can
    write it in the UPDATE that records the poll (or in one statement for many jobs)."""
    log = log or {}
    head = list(log.get("first") or [])
    tail = list(log.get("last") or [])
    dropped = int(log.get("dropped") or 0)
    if len(head) < first and not tail and not dropped:
        head.append(entry)
    else:
        tail.append(entry)
        if len(tail) > last:
            dropped += len(tail) - last
            tail = tail[-last:]
    return {"first": head, "last": tail, "dropped": dropped}


def poll_log_rows(log: dict | None) -> tuple[list[dict], list[dict], int]:
    """The log's entries as dicts for the job page: (first polls, last polls, how many were left out)."""
    log = log or {}

    def rows(entries) -> list[dict]:
        out = []
        for entry in entries or []:
            if isinstance(entry, list) and len(entry) == len(POLL_LOG_FIELDS):
                out.append(dict(zip(POLL_LOG_FIELDS, entry, strict=True)))
        return out

    return rows(log.get("first")), rows(log.get("last")), int(log.get("dropped") or 0)
