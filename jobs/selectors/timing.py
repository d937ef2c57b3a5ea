"""What OML took, told apart from what the dashboard added: the one definition the job page, the statistics,
the analytics and the metrics share.

An asynchronous job's finish in OML is never seen directly. It lies after the last status request that OML
answered 202 ("still running") and before the one it answered 302. So:

- OML time lies between `low` and `high` seconds:
  low  = the later of (last 202 - OML's 201) and OML's own last `elapsedTime` (it ran at least that long);
  high = 302 - the POST (it cannot have started before the call was sent, nor ended after the 302).
- The detection lag is the span in which the finish went unseen: 302 - last 202 (302 - 201 when the first
  status request already found it finished). An upper bound of the real lag.
- The estimate learned polling records is the middle of the poll bracket, on the schedule's own clock
  (seconds after OML's 201).

A synchronous call is seen whole: its OML time is finished - submitted, with no lag.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The columns of a job these definitions read (a values() row or a Job's attributes).
COLUMNS = (
    "created_at",
    "submitted_at",
    "oml_accepted_at",
    "oml_last_running_at",
    "oml_elapsed_seconds",
    "oml_finished_at",
    "result_fetched_at",
    "finished_at",
    "async_flag",
)


@dataclass(frozen=True)
class OMLBounds:
    low: float
    high: float
    lag: float | None  # None: a synchronous call, seen whole
    elapsed: float | None  # OML's own elapsedTime at its last 202

    @property
    def estimate(self) -> float:
        return (self.low + self.high) / 2


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


def _get(job: Any, name: str):
    return job[name] if isinstance(job, Mapping) else getattr(job, name)


def oml_bounds(job: Any) -> OMLBounds | None:
    """The bounds of a job's time in OML (a Job or a mapping of COLUMNS); None before OML has finished."""
    if not _get(job, "async_flag"):
        took = _seconds(_get(job, "submitted_at"), _get(job, "finished_at"))
        return None if took is None else OMLBounds(took, took, None, None)
    accepted, seen = _get(job, "oml_accepted_at"), _get(job, "oml_finished_at")
    submitted = _get(job, "submitted_at") or accepted
    if not accepted or not seen:
        return None
    running = _get(job, "oml_last_running_at")
    elapsed = _get(job, "oml_elapsed_seconds")
    last_seen_running = running if running and running <= seen else accepted
    low = max(_seconds(accepted, last_seen_running) or 0.0, elapsed or 0.0)
    high = max(_seconds(submitted, seen) or 0.0, low)
    return OMLBounds(low=low, high=high, lag=_seconds(last_seen_running, seen), elapsed=elapsed)


def learned_seconds(job: Any) -> float | None:
    """What a successful asynchronous run adds to its script's statistics: the middle of the poll bracket
    that holds its finish, in seconds after OML's 201 (the clock the poll schedule counts on)."""
    accepted, seen = _get(job, "oml_accepted_at"), _get(job, "oml_finished_at")
    if not accepted or not seen:
        return None
    running = _get(job, "oml_last_running_at")
    after = _seconds(accepted, running) if running and running <= seen else 0.0
    elapsed = _get(job, "oml_elapsed_seconds") or 0.0
    before = _seconds(accepted, seen) or 0.0
    after = min(max(after or 0.0, elapsed), before)
    return (after + before) / 2


def job_phases(job: Any) -> dict[str, float | None]:
    """Queue wait, sure OML time, detection lag and fetch time, in seconds (None where not reached).

    They follow one another, so they stack to the job's duration: queue = POST - creation; oml = last 202 -
    POST (for a synchronous call: its whole call); lag = 302 - last 202; fetch = result stored - 302.
    """
    created, submitted = _get(job, "created_at"), _get(job, "submitted_at")
    if not _get(job, "async_flag"):
        return {
            "queue": _seconds(created, submitted),
            "oml": _seconds(submitted, _get(job, "finished_at")),
            "lag": None,
            "fetch": None,
        }
    accepted, seen = _get(job, "oml_accepted_at"), _get(job, "oml_finished_at")
    running = _get(job, "oml_last_running_at")
    last_seen_running = running if running and seen and running <= seen else accepted
    return {
        "queue": _seconds(created, submitted),
        "oml": _seconds(submitted, last_seen_running if seen else None),
        "lag": _seconds(last_seen_running, seen),
        "fetch": _seconds(seen, _get(job, "result_fetched_at")),
    }
