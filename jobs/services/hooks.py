"""What other apps run at points of a job's life, without the jobs app importing them.

- Transition hooks run inside the transaction of every job transition (jobs.services.jobs.job_transition), after
  the transition row: what they write commits or rolls back with the move (the notifications outbox).
- Sweep hooks run at the end of each poll sweep (jobs.worker.lifecycle.sweep); one that fails is logged, never
  raised, so that it cannot stop polling.
- Purge hooks run at the end of the retention purge (jobs.services.retention.purge) with its time and deadline, for
  other apps' rows with a retention of their own (notifications); they return how many rows they removed.
Apps register theirs in AppConfig.ready().
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

logger = logging.getLogger(__name__)

TransitionHook = Callable[..., None]
_transition_hooks: list[TransitionHook] = []
_sweep_hooks: list[Callable[[], Any]] = []
_purge_hooks: list[Callable[..., int]] = []


def transition_hook_register(hook: TransitionHook) -> None:
    if hook not in _transition_hooks:
        _transition_hooks.append(hook)


def sweep_hook_register(hook: Callable[[], Any]) -> None:
    if hook not in _sweep_hooks:
        _sweep_hooks.append(hook)


def transition_hooks_run(*, job_id: int, job: dict, from_state: str, to_state: str, at: datetime) -> None:
    """Called by job_transition in its transaction; `job` holds the columns it read of the job."""
    for hook in _transition_hooks:
        hook(job_id=job_id, job=job, from_state=from_state, to_state=to_state, at=at)


def sweep_hooks_run() -> None:
    for hook in _sweep_hooks:
        try:
            hook()
        except Exception:  # a notification problem must never stop the sweep
            logger.exception("sweep hook %s failed", getattr(hook, "__name__", hook))


def purge_hook_register(hook: Callable[..., int]) -> None:
    if hook not in _purge_hooks:
        _purge_hooks.append(hook)


def purge_hooks_run(*, now: datetime, deadline: float) -> int:
    return sum(hook(now=now, deadline=deadline) for hook in _purge_hooks)
