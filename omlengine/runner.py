"""Runs one execution in its own OS process and enforces the wall clock from outside it.

Processes come from a multiprocessing fork server that has pandas, numpy and matplotlib preloaded, so each
start is a fork (milliseconds), not an interpreter start. The child limits its own CPU time and memory
(setrlimit); the parent kills it when the wall-clock limit passes or when `cancelled()` turns true.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import child
from .errors import ENGINE_FAILURE, LIMIT_EXCEEDED, EngineError

_POLL_SECONDS = 0.05
_context_lock = threading.Lock()
_context: multiprocessing.context.ForkServerContext | None = None


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int
    memory_mb: int
    wall_seconds: float


class Cancelled(Exception):
    """The execution was stopped from outside (its job was deleted, or the worker is shutting down)."""


def forkserver() -> multiprocessing.context.ForkServerContext:
    """The process's fork server context, its preload set before the server first starts."""
    global _context  # one fork server per OS process, created on first use
    with _context_lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["omlengine.sandbox"])
            _context = context
        return _context


def warm_up() -> None:
    """Start the fork server now rather than on the first execution (the worker does this at start)."""
    from multiprocessing import forkserver as server

    forkserver()
    server.ensure_running()


def run(task: dict[str, Any], limits: Limits, cancelled: Callable[[], bool] = lambda: False) -> str:
    """Answer the task's JSON result text, or raise EngineError (script error, limit, engine failure)."""
    context = forkserver()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=child.run_task, args=(sender, task, limits.cpu_seconds, limits.memory_mb), daemon=True
    )
    process.start()
    sender.close()
    try:
        return _await(process, receiver, limits, cancelled)
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        process.join(5)


def _await(process: multiprocessing.Process, receiver: Any, limits: Limits, cancelled: Callable[[], bool]) -> str:
    deadline = time.monotonic() + limits.wall_seconds
    while not receiver.poll(_POLL_SECONDS):
        if cancelled():
            process.kill()
            raise Cancelled
        if time.monotonic() > deadline:
            process.kill()
            raise EngineError(
                500, LIMIT_EXCEEDED, f"The script exceeded its wall-clock limit of {limits.wall_seconds:g} s."
            )
    try:
        message = receiver.recv()
    except EOFError:
        process.join(5)
        raise _death(process.exitcode, limits) from None
    if message[0] == "ok":
        return message[1]
    _, status, code, text = message
    raise EngineError(status, code, text)


def _death(exitcode: int | None, limits: Limits) -> EngineError:
    """Explain a process that ended without answering: a CPU limit signal, or some other death."""
    if exitcode in (-signal.SIGXCPU, -signal.SIGKILL):
        return EngineError(500, LIMIT_EXCEEDED, f"The script exceeded its CPU time limit of {limits.cpu_seconds} s.")
    return EngineError(500, ENGINE_FAILURE, f"The script's process ended without a result (exit code {exitcode}).")
