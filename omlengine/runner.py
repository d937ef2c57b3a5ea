"""Runs one execution in its own OS process, forked inside the sandbox, and enforces the wall clock from outside.

Each engine process (a web process for sync calls, the engine worker for async jobs) keeps one fork server
(omlengine.zygote) with pandas, numpy and matplotlib preloaded, started inside bubblewrap (omlengine.isolation)
on first use, so each execution costs a fork, not an interpreter start. Per execution the engine makes a socket
pair, hands one end to the fork server, sends the task on the other and waits for one frame (omlengine.wire).
Closing its end stops the execution: the fork server kills the process group at once. The child sets its own
CPU and memory limits; the wall clock and cancellation are watched here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import isolation, wire
from .errors import ENGINE_FAILURE, LIMIT_EXCEEDED, SANDBOX_UNAVAILABLE, EngineError

logger = logging.getLogger(__name__)

_POLL_SECONDS = 0.05
_START_SECONDS = 120  # importing pandas and matplotlib on a busy machine
_MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int
    memory_mb: int
    wall_seconds: float


class Cancelled(Exception):
    """The execution was stopped from outside (its job was deleted, or the worker is shutting down)."""


class _ForkServer:
    """One started fork server: its process, the engine's end of its control socket, and what it was started for."""

    def __init__(self, config: isolation.Config):
        self.config = config
        self.data_db_inode = _inode(config.data_db)
        identity = isolation.identity(config)
        wrapper = isolation.wrapper(config)
        own, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [*wrapper, isolation.python(), "-E", "-s", "-m", "omlengine.zygote", str(theirs.fileno())]
        if identity is not None:
            argv += [str(identity[0]), str(identity[1])]
        with tempfile.TemporaryFile() as errors:
            try:
                self.process = subprocess.Popen(  # noqa: S603 - our own command line
                    argv,
                    env={},
                    cwd=isolation.PROJECT_DIR,
                    stdin=subprocess.DEVNULL,
                    stdout=errors,
                    stderr=errors,
                    pass_fds=[theirs.fileno()],
                    start_new_session=True,
                )
            except OSError as exc:
                raise isolation.Unavailable(f"the fork server could not start: {exc}") from None
            finally:
                theirs.close()
            self.control = own
            self.lock = threading.Lock()
            self._await_ready(errors)

    def _await_ready(self, errors: Any) -> None:
        self.control.settimeout(_START_SECONDS)
        try:
            ready = self.control.recv(16)
        except OSError:
            ready = b""
        self.control.settimeout(None)
        if ready == b"ready":
            return
        self.stop()
        errors.seek(0)
        said = errors.read().decode(errors="replace").strip().splitlines()
        detail = " / ".join(said[-3:]) if said else f"exit code {self.process.returncode}"
        raise isolation.Unavailable(f"the fork server did not start: {detail}")

    def alive(self) -> bool:
        """Running, and (in the sandbox) still bound to the data database that is at its path now."""
        if self.process.poll() is not None:
            return False
        return not self.config.enabled or _inode(self.config.data_db) == self.data_db_inode

    def hand_over(self, sock: socket.socket) -> None:
        with self.lock:
            socket.send_fds(self.control, [b"run"], [sock.fileno()])

    def stop(self) -> None:
        """Closing the control socket ends the fork server and, with it, the sandbox's processes."""
        self.control.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


_lock = threading.Lock()
_server: _ForkServer | None = None


def _fork_server(config: isolation.Config) -> _ForkServer:
    """The process's fork server for this configuration, started (or restarted) when needed."""
    global _server  # one fork server per engine process
    with _lock:
        if _server is not None and (_server.config != config or not _server.alive()):
            _discard(_server)
        if _server is None:
            if config.enabled:
                isolation.ensure_data_db(config)
            try:
                _server = _ForkServer(config)
            except isolation.Unavailable as exc:
                logger.warning("embedded engine: refused to run a script: %s", exc)
                raise _refusal(str(exc)) from None
        return _server


def _discard(server: _ForkServer) -> None:
    global _server  # one fork server per engine process
    if _server is server:
        _server = None
    server.stop()


def _refusal(reason: str) -> EngineError:
    return EngineError(
        500,
        SANDBOX_UNAVAILABLE,
        f"The engine refuses to run scripts: it cannot isolate them here ({reason}). An administrator can "
        "install bubblewrap and allow namespaces, or set OMLENGINE_SANDBOX=off to run scripts without isolation.",
    )


def warm_up() -> None:
    """Start the fork server now rather than on the first execution (the worker does this at start)."""
    config = isolation.Config.current()
    isolation.announce()
    with contextlib.suppress(EngineError):  # announced and logged; each execution answers the refusal
        _fork_server(config)


def run(task: dict[str, Any], limits: Limits, cancelled: Callable[[], bool] = lambda: False) -> str:
    """Answer the task's JSON result text, or raise EngineError (bad input, script error, limit, refusal)."""
    config = isolation.Config.current()
    task = {
        **task,
        "data_db": config.data_db,
        "limits": {"cpu_seconds": limits.cpu_seconds, "memory_mb": limits.memory_mb},
    }
    own, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _start(config, theirs)
        theirs.close()
        with contextlib.suppress(OSError):  # a process that died at once has left its answer to read
            wire.send(own, wire.TASK, json.dumps(task).encode())
        return _await(own, limits, cancelled)
    finally:
        theirs.close()
        own.close()  # the fork server kills the process, if it still runs


def _start(config: isolation.Config, sock: socket.socket) -> None:
    """Hand the socket to the fork server; one that has died since its last use is replaced, once."""
    server = _fork_server(config)
    try:
        server.hand_over(sock)
    except OSError:
        logger.warning("embedded engine: the fork server had stopped; starting a new one")
        with _lock:
            _discard(server)
        _fork_server(config).hand_over(sock)


def _await(sock: socket.socket, limits: Limits, cancelled: Callable[[], bool]) -> str:
    deadline = time.monotonic() + limits.wall_seconds

    def waiting() -> None:
        if cancelled():
            raise Cancelled
        if time.monotonic() > deadline:
            raise EngineError(
                500, LIMIT_EXCEEDED, f"The script exceeded its wall-clock limit of {limits.wall_seconds:g} s."
            )

    sock.settimeout(_POLL_SECONDS)
    try:
        # A result cannot be larger than the memory the child was allowed to hold.
        kind, payload = wire.receive(sock, (limits.memory_mb + 64) * _MB, waiting)
    except (wire.Closed, ConnectionError):
        raise _death(None, limits) from None
    except wire.TooLarge:
        raise EngineError(500, ENGINE_FAILURE, "The script's process sent a malformed answer.") from None
    return _outcome(kind, payload, limits)


def _outcome(kind: bytes, payload: bytearray, limits: Limits) -> str:
    """What came back, read as data only: it comes from a process that runs code the engine does not trust."""
    try:
        if kind == wire.RESULT:
            return payload.decode()
        if kind == wire.ERROR:
            status, code, message = json.loads(payload)
            if isinstance(status, int) and 400 <= status <= 599 and isinstance(code, int) and isinstance(message, str):
                raise EngineError(status, code, message)
        elif kind == wire.EXIT:
            raise _death(int(payload), limits)
    except (ValueError, TypeError):
        pass
    raise EngineError(500, ENGINE_FAILURE, "The script's process sent a malformed answer.")


def _death(exitcode: int | None, limits: Limits) -> EngineError:
    """Explain a process that ended without answering: a CPU limit signal, or some other death."""
    if exitcode in (-signal.SIGXCPU, -signal.SIGKILL):
        return EngineError(500, LIMIT_EXCEEDED, f"The script exceeded its CPU time limit of {limits.cpu_seconds} s.")
    return EngineError(500, ENGINE_FAILURE, f"The script's process ended without a result (exit code {exitcode}).")


def _inode(path: str) -> int | None:
    try:
        return Path(path).stat().st_ino
    except OSError:
        return None
