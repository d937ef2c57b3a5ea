"""Job states and the table of allowed moves.

`jobs.services.jobs.job_transition` is the only code that changes a job's state, and it consults this table.
"""

from django.db import models


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    SUBMITTING = "submitting", "Submitting"
    PENDING = "pending", "Pending"
    FETCHING = "fetching", "Fetching result"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    TIMED_OUT = "timed_out", "Timed out"
    CANCELLED = "cancelled", "Cancelled"


S = JobState
TERMINAL_STATES = frozenset({S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.CANCELLED})
ACTIVE_STATES = frozenset(set(S) - TERMINAL_STATES)

# source state -> the states it may move to.
# Async: queued -> submitting -> pending -> fetching -> succeeded.
# Sync:  queued -> running -> succeeded | failed.
# Any non-terminal state may end as failed, timed_out or cancelled.
ALLOWED_MOVES: dict[str, frozenset[str]] = {
    S.QUEUED: frozenset({S.SUBMITTING, S.RUNNING, S.FAILED, S.TIMED_OUT, S.CANCELLED}),
    # submitting (or running) -> queued: OML refused the call before accepting it (429, 503, no free resource), so it is
    # safe to send again; never after a timeout, when OML may have accepted it.
    S.SUBMITTING: frozenset({S.QUEUED, S.PENDING, S.FAILED, S.TIMED_OUT, S.CANCELLED}),
    S.PENDING: frozenset({S.FETCHING, S.FAILED, S.TIMED_OUT, S.CANCELLED}),
    S.FETCHING: frozenset({S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.CANCELLED}),
    S.RUNNING: frozenset({S.QUEUED, S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.CANCELLED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.TIMED_OUT: frozenset(),
    S.CANCELLED: frozenset(),
}


def sources_of(target: str) -> frozenset[str]:
    """Every state from which a job may move to `target`."""
    return frozenset(source for source, targets in ALLOWED_MOVES.items() if target in targets)


class JobKind(models.TextChoices):
    DO_EVAL = "do_eval", "do-eval"
    TABLE_APPLY = "table_apply", "table-apply"
    ROW_APPLY = "row_apply", "row-apply"
    GROUP_APPLY = "group_apply", "group-apply"
    INDEX_APPLY = "index_apply", "index-apply"

    @property
    def path(self) -> str:
        """The URL segment OML uses for this kind of call."""
        return self.value.replace("_", "-")


class ServiceLevel(models.TextChoices):
    LOW = "LOW", "LOW (2 parallel)"
    MEDIUM = "MEDIUM", "MEDIUM (4 parallel)"
    HIGH = "HIGH", "HIGH (8 parallel)"
    TP = "TP", "TP (v2)"
    TPURGENT = "TPURGENT", "TPURGENT (v2)"
