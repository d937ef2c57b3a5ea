"""Running the real `omlpy` executable (the client distribution's console script in the test run's virtualenv)
as a subprocess, with a home folder of its own, and small HTTP servers that stand in for what the real stack
cannot produce on demand: an overloaded server, and a network that loses an answer."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

OMLPY = Path(sys.executable).with_name("omlpy")


@dataclass
class Omlpy:
    """`omlpy` for one test: its own HOME (and XDG_CONFIG_HOME), signed in through OMLPY_URL and OMLPY_TOKEN
    unless told otherwise; retries and polls paced for tests."""

    home: Path
    url: str
    token: str

    def env(self, signed_in: bool = True, **extra: str) -> dict[str, str]:
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "LC_ALL": "C.UTF-8",
            "OMLPY_RETRY_BACKOFF": "0.05",
            "OMLPY_POLL_INTERVAL": "0.5",
        }
        if signed_in:
            environment |= {"OMLPY_URL": self.url, "OMLPY_TOKEN": self.token}
        return environment | extra

    def __call__(
        self, *args: str, signed_in: bool = True, input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(OMLPY), *args],
            env=self.env(signed_in, **(env or {})),
            input=input,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def raw(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        """The command with its stdout as bytes (a result streamed to stdout)."""
        return subprocess.run([str(OMLPY), *args], env=self.env(), capture_output=True, timeout=300)


def assert_refused(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    """The command ended with `code` and one line on stderr, no traceback, naming each of `words`."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip() and "GetPassWarning" not in line]
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    at: float


@dataclass
class StandIn:
    """A local HTTP server whose answers a test decides; it records every request it gets."""

    answer: Callable[[BaseHTTPRequestHandler, bytes], tuple[int, dict[str, str], bytes] | None]
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""

    @contextlib.contextmanager
    def running(self) -> Iterator[StandIn]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stand_in.requests.append(Recorded(self.command, self.path, dict(self.headers), time.monotonic()))
                answered = stand_in.answer(self, body)
                if answered is None:
                    return
                status, headers, content = answered
                with contextlib.suppress(OSError):  # the client may have given up on this answer
                    self.send_response(status)
                    for name, value in {**headers, "Content-Length": str(len(content))}.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(content)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


def forward(upstream: str, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """The real server's answer to the request `handler` holds."""
    keep = ("Authorization", "Content-Type", "Accept", "Idempotency-Key")
    answer = requests.request(
        handler.command,
        upstream + handler.path,
        data=body or None,
        headers={name: handler.headers[name] for name in keep if name in handler.headers},
        timeout=60,
    )
    return answer.status_code, {"Content-Type": answer.headers.get("Content-Type", "")}, answer.content
