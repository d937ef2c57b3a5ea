"""An execution's own process: read the task, apply the limits, run the input query and the script, answer.

Forked by the fork server (omlengine.zygote) with pandas already imported. Everything after the limits are set
runs under them, the input query included: a query that never ends or returns more rows than fit is stopped
like a script. One frame goes back (RESULT or ERROR, see omlengine.wire); a limit may kill the process first,
and the fork server then reports how it ended.
"""

from __future__ import annotations

import json
import resource
import socket
from typing import Any

from . import inputs, sandbox, wire
from .errors import ENGINE_FAILURE, LIMIT_EXCEEDED, EngineError

MB = 1024 * 1024
TASK_LIMIT = 64 * MB


def serve(sock: socket.socket) -> None:
    """Run the one task that arrives on `sock` and send back its outcome."""
    kind, payload = wire.receive(sock, TASK_LIMIT)
    if kind != wire.TASK:
        return
    task: dict[str, Any] = json.loads(payload)
    del payload
    memory_mb = task["limits"]["memory_mb"]
    _limit(task["limits"]["cpu_seconds"], memory_mb)
    try:
        text = _run(task)
    except EngineError as exc:
        _error(sock, exc.status, exc.code, exc.message)
    except MemoryError:
        _error(sock, 500, LIMIT_EXCEEDED, f"The script exceeded its memory limit of {memory_mb} MB.")
    except Exception as exc:  # anything else is the engine's fault, reported rather than lost with the process
        _error(sock, 500, ENGINE_FAILURE, f"The engine failed to run the script: {exc!r}")
    else:
        wire.send(sock, wire.RESULT, text.encode())


def _run(task: dict[str, Any]) -> str:
    query = task["execution"]["input"]
    if query:
        columns, rows = inputs.read(query, task["data_db"])
        task["data"] = {"columns": columns, "rows": rows}
    return sandbox.execute(task)


def _error(sock: socket.socket, status: int, code: int, message: str) -> None:
    wire.send(sock, wire.ERROR, json.dumps([status, code, message]).encode())


def _limit(cpu_seconds: int, memory_mb: int) -> None:
    """CPU seconds for this process; memory counted above what the preloaded libraries already map."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    ceiling = _address_space() + memory_mb * MB
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()
