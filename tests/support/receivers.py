"""Real receivers of notifications on loopback, for the notification tests.

- WebhookReceiver: a threaded http.server that checks each POST's X-OMLPy-Signature against the rule's secret
  and records its Idempotency-Key. It can answer 500, redirect, hold a request until released, or go down
  (its socket closed: connections are refused) and come back on the same port.
- MailReceiver: aiosmtpd's SMTP server, keeping every message it receives.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.stack import free_port


@dataclass
class Received:
    key: str
    body: dict
    headers: dict[str, str]
    signature_ok: bool
    signed_at: int | None


@dataclass
class WebhookReceiver:
    secret: str = ""
    mode: str = "ok"  # ok | 500 | redirect | hold
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    hits: int = 0
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def keys(self) -> list[str]:
        with self._lock:
            return [item.key for item in self.received]

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.hits += 1
                receiver.arrived.set()
                if receiver.mode == "hold":
                    receiver.release.wait(30)
                if receiver.mode == "500":
                    self.send_response(500)
                    self.end_headers()
                    return
                if receiver.mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", f"http://127.0.0.1:{receiver.port}/elsewhere")
                    self.end_headers()
                    return
                ok, signed_at = receiver.verify(self.headers.get("X-OMLPy-Signature", ""), body)
                with receiver._lock:
                    receiver.received.append(
                        Received(
                            key=self.headers.get("Idempotency-Key", ""),
                            body=json.loads(body),
                            headers=dict(self.headers.items()),
                            signature_ok=ok,
                            signed_at=signed_at,
                        )
                    )
                self.send_response(204)
                self.end_headers()

        return Handler

    def verify(self, header: str, body: bytes) -> tuple[bool, int | None]:
        """What a receiver does with X-OMLPy-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{body}">."""
        parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
        if "t" not in parts or "v1" not in parts or not parts["t"].isdigit():
            return False, None
        expected = hmac.new(self.secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, parts["v1"]), int(parts["t"])

    def start(self) -> WebhookReceiver:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Down: the port refuses connections until start() again."""
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class MailReceiver:
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.port = free_port()
        self.messages: list = []
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                receiver.messages.append(message_from_bytes(envelope.content, policy=policy.default))
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> MailReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def wait(self, count: int, timeout: float = 10) -> list:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages
