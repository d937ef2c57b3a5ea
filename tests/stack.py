"""Real processes for end-to-end tests: the web server (which also serves the embedded engine), a Celery
worker with beat, and the engine's worker, all on the test database and a broker of the test run's own."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests
from django.conf import settings
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn_argv(port: int, *, workers: int, threads: int) -> list[str]:
    """The project's web process as production runs it: gunicorn with threaded workers."""
    return [
        sys.executable, "-m", "gunicorn", "omlpy_dashboard.wsgi:application", "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads),
        "--timeout", "120", "--graceful-timeout", "5",
    ]  # fmt: skip


def wait_for(predicate: Callable[[], object], timeout: float = 60, interval: float = 0.2, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the condition may not be ready to evaluate yet
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else "")
    )


# How long a test's processes get to stop on SIGTERM before SIGKILL. A worker's warm shutdown waits for its
# tasks (a sweep whose web server is already gone retries its requests) and the engine worker gives running
# jobs OMLENGINE_WORKER_GRACE_SECONDS: nothing a test checks needs either once the test is over, and killing
# any process at any moment loses nothing (tests/test_lifecycle.py, bench/drills.py).
STOP_GRACE_SECONDS = 3.0


def stop_process_groups(procs: list[subprocess.Popen], sig: int = signal.SIGTERM, grace: float = STOP_GRACE_SECONDS):
    """Send `sig` to the process groups a test started, all at once, and SIGKILL those still running after
    `grace` seconds (one wait for all of them, not one per process)."""
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
    deadline = time.monotonic() + grace
    for proc in running:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    # Children left in a group whose leader ended (a gunicorn worker, a sandboxed script) go too.
    for proc in running:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def stop_process_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = STOP_GRACE_SECONDS) -> None:
    """Send `sig` to the process group a test started, and SIGKILL it if it has not ended within `grace`."""
    stop_process_groups([proc], sig, grace)


def test_database_url() -> str:
    """The URL of the database pytest-django created, for the processes the tests start."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    user = db.get("USER") or "postgres"
    password = db.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else f"{user}@"
    return f"postgres://{auth}{host}:{port}/{db['NAME']}"


class Stack:
    """Starts and stops the system's processes. `env` overrides settings for all of them."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.procs: dict[str, subprocess.Popen] = {}

    # --- processes --------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - kept open for the process's life
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs[name] = proc
        return proc

    def start_web(self) -> None:
        self._spawn("web", gunicorn_argv(self.port, workers=2, threads=4))
        wait_for(self._web_answers, timeout=60, what=f"web server on {self.base_url}")

    def _web_answers(self) -> bool:
        try:
            return requests.get(f"{self.base_url}/healthz", timeout=2).status_code in (200, 503)
        except requests.ConnectionError:
            if self.procs["web"].poll() is not None:
                raise RuntimeError(f"web server exited; see {self.log_dir / 'web.log'}") from None
            return False

    def start_worker(self, name: str = "worker", beat: bool = True, concurrency: int = 2) -> subprocess.Popen:
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "omlpy_dashboard",
            "worker",
            "--loglevel=INFO",
            f"--concurrency={concurrency}",
            f"--hostname={name}-{self.port}@%h",
            "--without-mingle",
            "--without-gossip",
        ]
        if beat:
            argv += ["--beat", "--schedule", str(self.log_dir / f"{name}-beat-schedule")]
        return self._spawn(name, argv)

    def start_beat(self, name: str = "beat") -> subprocess.Popen:
        """Beat on its own, as in production (exactly one per deployment)."""
        return self._spawn(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "omlpy_dashboard",
                "beat",
                "--loglevel=INFO",
                "--schedule",
                str(self.log_dir / f"{name}-schedule"),
            ],
        )

    def start_engine_worker(self) -> None:
        if "omlengine_worker" in get_commands():
            self._spawn("engine", [sys.executable, "manage.py", "omlengine_worker"])

    def start(self) -> Stack:
        self.start_web()
        self.start_engine_worker()
        self.start_worker()
        return self

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            stop_process_group(proc, sig)

    def stop(self) -> None:
        """Stop every process at once (SIGTERM, then SIGKILL after STOP_GRACE_SECONDS)."""
        procs = list(self.procs.values())
        self.procs.clear()
        stop_process_groups(procs)

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- HTTP -------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"
