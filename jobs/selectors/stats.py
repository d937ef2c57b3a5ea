"""Duration statistics (ScriptStats): what learned polling and "usually takes" know of a script.

Kept twice for every successful asynchronous run: under the script (signature "") and under its call signature
(the same kind, parameters, input, rows / groupBy / times and connection), so that a script called with very
different arguments is expected to take what calls like this one took. Recorded in the transaction of the
job's last transition, so they do not depend on old job rows, which retention removes.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from jobs.models import ScriptStats
from jobs.worker import polling

# A signature speaks for its calls once it has this many runs; until then the script's statistics do.
SIGNATURE_MIN_RUNS = 5


def call_signature(job: Any) -> str:
    """sha256 of the canonical JSON of what makes two calls of a script alike (a Job or any object with its
    fields): kind, parameters, input, rows, groupBy, times and connection."""
    canonical = json.dumps(
        {
            "kind": job.kind,
            "parameters": job.parameters or {},
            "input": job.input_sql or "",
            "rows": job.rows,
            "groupBy": job.group_by or "",
            "times": job.times,
            "connection": job.connection_id,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _record_one(*, connection_id: int, script_name: str, script_owner: str, signature: str, seconds: float, at) -> None:
    for _attempt in (1, 2):
        try:
            with transaction.atomic():
                stats = (
                    ScriptStats.objects.select_for_update()
                    .filter(
                        connection_id=connection_id,
                        script_name=script_name,
                        script_owner=script_owner,
                        signature=signature,
                    )
                    .first()
                )
                if stats is None:
                    ScriptStats.objects.create(
                        connection_id=connection_id,
                        script_name=script_name,
                        script_owner=script_owner,
                        signature=signature,
                        durations=[seconds],
                        runs=1,
                        updated_at=at,
                    )
                    return
                stats.durations = [*stats.durations, seconds][-polling.HISTORY_RUNS :]
                stats.runs += 1
                stats.updated_at = at
                stats.save(update_fields=["durations", "runs", "updated_at"])
                return
        except IntegrityError:
            continue  # another run of the script created its row first: add to that one


def script_stats_record(
    *, connection_id: int, script_name: str, script_owner: str, seconds: float, at: datetime, signature: str = ""
) -> None:
    """Add one successful run's time in OML to its script's statistics and to its signature's (keeping the
    latest HISTORY_RUNS of each)."""
    if seconds <= 0:
        return
    for key in ("", signature) if signature else ("",):
        _record_one(
            connection_id=connection_id,
            script_name=script_name,
            script_owner=script_owner,
            signature=key,
            seconds=seconds,
            at=at,
        )


def script_durations(
    *, connection_id: int, script_name: str, script_owner: str, signature: str = ""
) -> list[float] | None:
    """The latest successful durations of calls like this one: the signature's once it has
    SIGNATURE_MIN_RUNS runs, else the script's; None if none were recorded."""
    rows = dict(
        ScriptStats.objects.filter(
            connection_id=connection_id,
            script_name=script_name,
            script_owner=script_owner,
            signature__in={"", signature},
        ).values_list("signature", "durations")
    )
    chosen = rows.get(signature) if signature else None
    if chosen is None or len(chosen) < SIGNATURE_MIN_RUNS:
        chosen = rows.get("")
    return None if chosen is None else [float(value) for value in chosen]
