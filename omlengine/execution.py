"""Running one execution: read its input, hand script and data to a limited process, answer the JSON text.

Shared by sync calls (inside the web request) and async jobs (inside `omlengine_worker`).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings

from . import data, runner
from .models import EngineScript
from .protocol import Execution


def run(
    *, script: EngineScript, execution: Execution, wall_seconds: float, cancelled: Callable[[], bool] = lambda: False
) -> str:
    """The result's JSON text; raises EngineError for bad input, a script error, a limit or an engine failure."""
    task = {
        "script_name": script.name,
        "source": script.source,
        "execution": execution.to_json(),
        "data": _input(execution),
    }
    limits = runner.Limits(
        cpu_seconds=settings.OMLENGINE_CPU_SECONDS, memory_mb=settings.OMLENGINE_MEMORY_MB, wall_seconds=wall_seconds
    )
    return runner.run(task, limits, cancelled)


def _input(execution: Execution) -> dict | None:
    if not execution.input:
        return None
    columns, rows = data.query(execution.input)
    return {"columns": columns, "rows": rows}
