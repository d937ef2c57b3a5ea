"""Per-script duration statistics (ScriptStats): what learned polling and "usually takes" know of a script.

Recorded as each asynchronous job succeeds (in the transaction of that transition), so they do not depend
on old job rows, which retention removes.
"""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction

from . import polling
from .models import ScriptStats


def script_stats_record(
    *, connection_id: int, script_name: str, script_owner: str, seconds: float, at: datetime
) -> None:
    """Add one successful run's time in OML to its script's statistics (keeping the latest HISTORY_RUNS)."""
    if seconds <= 0:
        return
    for _attempt in (1, 2):
        try:
            with transaction.atomic():
                stats = (
                    ScriptStats.objects.select_for_update()
                    .filter(connection_id=connection_id, script_name=script_name, script_owner=script_owner)
                    .first()
                )
                if stats is None:
                    ScriptStats.objects.create(
                        connection_id=connection_id,
                        script_name=script_name,
                        script_owner=script_owner,
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


def script_durations(*, connection_id: int, script_name: str, script_owner: str) -> list[float] | None:
    """The latest successful durations of a script on a connection, or None if none were recorded."""
    row = (
        ScriptStats.objects.filter(connection_id=connection_id, script_name=script_name, script_owner=script_owner)
        .values_list("durations", flat=True)
        .first()
    )
    return None if row is None else [float(value) for value in row]
