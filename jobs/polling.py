"""When to ask OML about a job next.

Two schedules:
- Backoff, for a script with no history: wait a fixed share of the job's age (factor - 1), between the
  initial delay and the cap. A job found finished was then at most a third of its age late (factor 1.5).
- Learned, for a script that ran before: its past durations (median and the spread of their logarithm)
  say when it will probably finish. Poll once early as a guard, then not until the likely window opens,
  then every `lag target` seconds through the window that holds 95 % of past runs, then back off from the
  window's end (a late run is most often only a little late).
Neither ever waits past the job's deadline.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from django.conf import settings

# The window of likely finish times: median * exp(+-Z * spread) holds 95 % of lognormal durations.
Z = 1.96
MIN_SPREAD = 0.02
MIN_RUNS = 3
HISTORY_RUNS = 30


@dataclass(frozen=True)
class Expectation:
    median: float
    spread: float

    @property
    def window(self) -> tuple[float, float]:
        return self.median * math.exp(-Z * self.spread), self.median * math.exp(Z * self.spread)


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
    opens, closes = expected.window
    lag = settings.JOBS_POLL_LAG_TARGET
    if age < opens - lag:
        guard = opens / 2
        if age < guard - lag:
            # One early look catches a script that has become much faster than it used to be.
            return max(guard - age, settings.JOBS_POLL_INITIAL)
        return max(opens - age, settings.JOBS_POLL_INITIAL)
    if age < closes:
        return max(lag, settings.JOBS_POLL_INITIAL)
    # Late: most late runs are only a little late, so back off from the window's end, not from the start.
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
