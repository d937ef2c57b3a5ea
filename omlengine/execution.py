"""Running one execution: hand script and request to a limited process in the sandbox, answer the JSON text.

The process runs the `input` query too (omlengine.child): the rows never pass through the web process or the
engine worker, and the query is under the same CPU, memory and wall-clock limits as the script.
Shared by sync calls (inside the web request) and async jobs (inside `omlengine_worker`).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings

from . import runner
from .models import EngineScript
from .protocol import Execution


def run(
    *, script: EngineScript, execution: Execution, wall_seconds: float, cancelled: Callable[[], bool] = lambda: False
) -> str:
    """The result's JSON text; raises EngineError for bad input, a script error, a limit or an engine failure."""
    task = {"script_name": script.name, "source": script.source, "execution": execution.to_json()}
    limits = runner.Limits(
        cpu_seconds=settings.OMLENGINE_CPU_SECONDS, memory_mb=settings.OMLENGINE_MEMORY_MB, wall_seconds=wall_seconds
    )
    return runner.run(task, limits, cancelled)
