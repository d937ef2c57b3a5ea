"""When to ask OML about a job next.

Two schedules:
- Backoff, for a script with no history: wait a fixed share of the job's age (factor - 1), between the
  initial delay and the cap. A job found finished was then at most a third of its age late (factor 1.5).
- Learned, for a script that ran before. Its past durations (their median and the spread of their logarithm, a
  lognormal fit) say what share of runs has finished by any age, and the polls are placed by those shares:
  1. No poll until START_QUANTILE of past runs would have finished: those few are found at that first look.
     A script whose first look comes later than GUARD_AFTER gets one look half-way there before it, to catch
     a run much faster than its history, unless that history is tight (GUARD_SPREAD): a script whose runs
     varied little has shown no sign of such runs, and the look would cost each of its runs a poll.
  2. Then, up to the END_QUANTILE, each wait lasts until another STEP_SHARE of the runs still going would
     have finished, but no shorter than the lag target less half a sweep tick, and no longer than the lag
     target plus half a tick. Where finishing is unlikely (early in a wide window) the polls stand a tick
     further apart; where runs are finishing fast, a tick closer.
  3. Later than nearly every past run: backoff from there (a run this late is often much later).
Neither ever waits past the job's deadline.

Why so: a poll costs as much wherever it is, but it only happens while the job still runs. Polls before most
runs finish are paid by every run and find few of them finished: those are the ones to spare. Leaving the
first START_QUANTILE of runs to the first look, and spacing the polls wider where a poll has little chance of
finding the run finished, buys the most detection for the fewest polls; keeping START_QUANTILE well under
5 % and every other wait within half a tick of the lag target keeps the 95th percentile of the lag at about
the lag target plus the sweep's own delay.

Sweep ticks: a poll due at some time is sent by the next sweep, JOBS_SWEEP_INTERVAL apart, so waits are in
effect whole ticks. The learned schedule asks for its first look half a tick early (on average it is then
sent at the quantile), and its bounds of lag target +- half a tick choose between neighbouring whole ticks.
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
# The learned schedule's first look and the end of its close polling, as quantiles of past durations.
START_QUANTILE = 0.03
END_QUANTILE = 0.999
# Between them, each wait lasts until this share of the runs still going would have finished (within bounds).
STEP_SHARE = 0.08
# A first look later than GUARD_AFTER seconds gets one early look half-way to it, unless the history is tight
# (its spread under GUARD_SPREAD, durations varying by less than about a quarter).
GUARD_AFTER = 180.0
GUARD_SPREAD = 0.25

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

    def share_done(self, age: float) -> float:
        """The share of runs finished by `age` seconds, by the lognormal fit."""
        if age <= 0:
            return 0.0
        return _NORMAL.cdf(math.log(age / self.median) / self.spread)

    @property
    def dense(self) -> tuple[float, float]:
        """Where the learned schedule polls closely: from START_QUANTILE to END_QUANTILE of past durations."""
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
    lag, tick = settings.JOBS_POLL_LAG_TARGET, settings.JOBS_SWEEP_INTERVAL
    shortest = max(lag - tick / 2, settings.JOBS_POLL_INITIAL)
    longest = max(lag + tick / 2, shortest)
    if age < opens - shortest:
        guard = opens / 2
        if opens > GUARD_AFTER and expected.spread >= GUARD_SPREAD and age < guard - shortest:
            # One early look catches a long script that has become much faster than it used to be.
            return max(guard - age, settings.JOBS_POLL_INITIAL)
        return max(opens - tick / 2 - age, settings.JOBS_POLL_INITIAL)
    if age < closes:
        # Until another STEP_SHARE of the runs still going would have finished, within the bounds.
        done = expected.share_done(age)
        step = expected.quantile(done + STEP_SHARE * (1 - done)) - age
        return min(max(step, shortest), longest)
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
