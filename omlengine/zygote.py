"""The fork server: started once per engine process (inside bubblewrap when the sandbox is on), it imports
pandas, numpy and matplotlib once and forks one process per execution, so that each start costs a fork.

    python -m omlengine.zygote CONTROL_FD [UID GID]

Free of Django, and of anything the engine's settings hold: it runs with an empty environment.

1. With UID and GID (the engine runs as root), drop to that user and group before importing anything else.
2. Preload the science stack, then empty the environment and point stdin, stdout and stderr at /dev/null
   (a script's output is not the engine's log), and say "ready" on the control socket.
3. Loop: each message on the control socket carries one socket (SCM_RIGHTS) for a new execution; fork a child
   in a process group of its own, which runs omlengine.child on that socket.
4. When the engine closes its end of an execution's socket (wall clock, cancel, or it has its answer), kill
   the child's process group. When a child ends, write its exit code on its socket (EXIT), kill what is left
   of its group, and forget it.
5. When the control socket closes (the engine process ended), kill every child and exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import sys

from . import wire

_PR_SET_PDEATHSIG = 1
_STANDARD_FDS = 3
_EXECUTION_FD = 3


def main(argv: list[str]) -> None:
    control = socket.socket(fileno=int(argv[0]))
    if len(argv) == 3:
        _drop_privileges(uid=int(argv[1]), gid=int(argv[2]))
    _preload()
    _quiet()
    control.sendall(b"ready")
    Server(control).serve()


def _drop_privileges(*, uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:  # never carry on as root
        raise SystemExit(f"could not switch to uid {uid}")


def _preload() -> None:
    # Caches for matplotlib and fontconfig go to the sandbox's private /tmp; the variables last only until
    # the imports are done.
    os.environ.update({"HOME": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib"})  # noqa: S108 - a private tmpfs
    from . import child  # noqa: F401 - importing is the preload (child imports sandbox: pandas and the rest)

    os.environ.clear()


def _quiet() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in range(_STANDARD_FDS):
        os.dup2(null, fd)
    os.close(null)


class Server:
    def __init__(self, control: socket.socket):
        self.control = control
        self.children: dict[int, socket.socket] = {}  # pid -> the fork server's copy of its socket
        self.by_fd: dict[int, int] = {}  # that socket's fd -> pid
        self.fresh: set[int] = set()  # fds of executions started since the last poll
        self.poller = select.poll()
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.poller.register(control, select.POLLIN)
        self.poller.register(self.wake_r, select.POLLIN)

    def serve(self) -> None:
        while True:
            for fd, _ in self.poller.poll():
                if fd == self.control.fileno():
                    if not self._accept():
                        self._stop()
                        return
                elif fd == self.wake_r:
                    os.read(self.wake_r, 512)
                    self._reap()
                elif fd in self.by_fd and fd not in self.fresh:
                    self._hang_up(fd)
            # An fd closed (reaped) and reused (forked) within one batch must not take an old event for its own.
            self.fresh.clear()

    def _accept(self) -> bool:
        message, fds, _, _ = socket.recv_fds(self.control, 16, 4)
        if not message:
            return False
        for fd in fds:
            self._fork(socket.socket(fileno=fd))
        return True

    def _fork(self, sock: socket.socket) -> None:
        try:
            pid = os.fork()
        except OSError as exc:
            refusal = [503, 1503, f"The engine cannot start a process now: {exc.strerror}."]
            with contextlib.suppress(OSError):
                wire.send(sock, wire.ERROR, json.dumps(refusal).encode())
            sock.close()
            return
        if pid == 0:
            self._become_child(sock)
        with contextlib.suppress(OSError):  # the child does the same; whichever runs first wins
            os.setpgid(pid, pid)
        self.children[pid] = sock
        self.by_fd[sock.fileno()] = pid
        self.fresh.add(sock.fileno())
        # Only a hang-up matters: the engine never half-closes, and the data on the socket is the child's.
        self.poller.register(sock, select.POLLRDHUP)

    def _become_child(self, sock: socket.socket) -> None:
        code = 1
        try:
            os.setpgid(0, 0)
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            # Without the sandbox's PID namespace, this is what ends the child if the fork server dies.
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            # Keep only the standard streams and this execution's socket: never another execution's. The socket
            # objects forget their fds first, so that none of them closes a number the script reuses.
            own = sock.detach()
            for other in (self.control, *self.children.values()):
                other.detach()
            os.dup2(own, _EXECUTION_FD)
            os.closerange(_EXECUTION_FD + 1, os.sysconf("SC_OPEN_MAX"))
            from . import child

            child.serve(socket.socket(fileno=_EXECUTION_FD))
            code = 0
        finally:
            os._exit(code)

    def _hang_up(self, fd: int) -> None:
        pid = self.by_fd.pop(fd)
        self.poller.unregister(fd)
        _kill_group(pid)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            # The group may hold processes the script started; nothing of an execution outlives it.
            _kill_group(pid)
            sock = self.children.pop(pid, None)
            if sock is None:
                continue
            if self.by_fd.pop(sock.fileno(), None) is not None:
                self.poller.unregister(sock)
            with contextlib.suppress(OSError):
                wire.send(sock, wire.EXIT, str(os.waitstatus_to_exitcode(status)).encode())
            sock.close()

    def _stop(self) -> None:
        for pid in self.children:
            _kill_group(pid)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv[1:])
