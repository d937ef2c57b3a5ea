"""The entry point of an execution's process: apply the resource limits, run the task, send back one message.

Kept free of heavy imports because the parent imports it to name the target; the fork server has already
imported `omlengine.sandbox`, so the import below costs nothing in the child.
"""

from __future__ import annotations

import resource
from multiprocessing.connection import Connection
from typing import Any

from .errors import ENGINE_FAILURE, LIMIT_EXCEEDED, EngineError

MB = 1024 * 1024


def run_task(conn: Connection, task: dict[str, Any], cpu_seconds: int, memory_mb: int) -> None:
    """Send ("ok", json_text) or ("error", status, code, message); a limit breach may kill us before we can."""
    _limit(cpu_seconds, memory_mb)
    try:
        from . import sandbox

        conn.send(("ok", sandbox.execute(task)))
    except EngineError as exc:
        conn.send(("error", exc.status, exc.code, exc.message))
    except MemoryError:
        conn.send(("error", 500, LIMIT_EXCEEDED, f"The script exceeded its memory limit of {memory_mb} MB."))
    except Exception as exc:  # anything else is the engine's fault, reported rather than lost with the process
        conn.send(("error", 500, ENGINE_FAILURE, f"The engine failed to run the script: {exc!r}"))
    finally:
        conn.close()


def _limit(cpu_seconds: int, memory_mb: int) -> None:
    """CPU seconds for this process; memory counted above what the preloaded libraries already map."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    ceiling = _address_space() + memory_mb * MB
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()
