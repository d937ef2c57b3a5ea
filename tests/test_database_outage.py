"""While PostgreSQL cannot be reached, pages and the API answer 503 with Retry-After; once it is back, 200.

The outage is made by a TCP relay between gunicorn and PostgreSQL: cutting it closes every relayed connection
and stops listening, restoring it listens again on the same port. The shared PostgreSQL server is never
touched, and the test runs on a database of its own whatever database the rest of the suite uses.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import environ
import psycopg
import pytest
import requests
from psycopg import sql

from tests.stack import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
USERNAME, PASSWORD = "outage-analyst", "a-long-password-for-the-outage-test"
PAGES = ["/", "/jobs/"]
API = "/api/v1/jobs"


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class TcpRelay:
    """Forwards connections on 127.0.0.1:`port` to `target`; `cut()` drops them all, `restore()` reopens."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = free_port()
        self._lock = threading.Lock()
        self._relayed: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    def restore(self) -> None:
        # create_server sets SO_REUSEADDR: the port is bound again beside connections left in TIME_WAIT.
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._acceptor = threading.Thread(target=self._accept, args=(self._listener,), daemon=True)
        self._acceptor.start()

    def cut(self) -> None:
        if self._listener is not None:
            _close(self._listener)  # shutdown() wakes the accept() blocked in the acceptor thread
            self._listener = None
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)  # after this no connection is being set up any more
            self._acceptor = None
        with self._lock:
            relayed, self._relayed = self._relayed, set()
        for sock in relayed:
            _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                downstream, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(downstream)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._relayed.update((downstream, upstream))
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                _close(sock)
            with self._lock:
                self._relayed.difference_update((source, sink))


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str

    @classmethod
    def for_tests(cls) -> PostgresServer:
        """The server of DATABASE_URL when it names PostgreSQL, else the local one."""
        url = os.environ.get("DATABASE_URL", "")
        if url.startswith(("postgres://", "postgresql://", "pgsql://")):
            config = environ.Env.db_url_config(url)
            return cls(
                host=str(config.get("HOST") or "127.0.0.1"),
                port=int(config.get("PORT") or 5432),
                user=str(config.get("USER") or "postgres"),
                password=str(config.get("PASSWORD") or ""),
            )
        return cls(host="127.0.0.1", port=5432, user="postgres", password="")

    def url(self, database: str, *, host: str | None = None, port: int | None = None) -> str:
        auth = quote(self.user, safe="") + (f":{quote(self.password, safe='')}" if self.password else "")
        return f"postgres://{auth}@{host or self.host}:{port or self.port}/{database}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname="postgres", autocommit=True
        )


def _run(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def outage_site(tmp_path) -> Iterator[dict]:
    """gunicorn on a fresh database (migrated, one user, one API token), reaching PostgreSQL through a relay."""
    server = PostgresServer.for_tests()
    # The database the relay (a TCP proxy) leads to; a name of its own, so that parallel runs never meet.
    database = f"omlpy_proxy_outage_{secrets.token_hex(4)}"
    with server.admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    relay = TcpRelay((server.host, server.port))
    web: subprocess.Popen | None = None
    try:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "TEST_DATABASE_NAME", "BEHIND_TLS_PROXY", "TRUSTED_PROXIES")
        }
        env.update(
            DATABASE_URL=server.url(database),
            DEBUG="false",
            SECRET_KEY=secrets.token_urlsafe(50),
            SECURE_SSL_REDIRECT="false",
            SECURE_COOKIES="false",
            OMLENGINE_ENABLED="false",
            PYTHONUNBUFFERED="1",
        )
        manage = [sys.executable, "manage.py"]
        _run([*manage, "migrate", "--noinput", "-v", "0"], env)
        create_user = (
            "from django.contrib.auth import get_user_model; "
            f"get_user_model().objects.create_user({USERNAME!r}, password={PASSWORD!r})"
        )
        _run([*manage, "shell", "-c", create_user], env)
        token = _run([*manage, "apitoken", USERNAME], env).strip()
        assert token.startswith("omlpy_"), token

        relay.restore()
        port = free_port()
        env.update(
            DATABASE_URL=server.url(database, host="127.0.0.1", port=relay.port),
            GUNICORN_BIND=f"127.0.0.1:{port}",
            WEB_CONCURRENCY="1",
            GUNICORN_THREADS="2",
        )
        log = (tmp_path / "web.log").open("wb")
        web = subprocess.Popen(
            # No control socket: several test runs share the default one.
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "--no-control-socket",
             "omlpy_dashboard.wsgi:application"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        base_url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            assert web.poll() is None, (tmp_path / "web.log").read_text(errors="replace")
            return requests.get(f"{base_url}/accounts/login/", timeout=5).status_code == 200

        wait_for(answers, timeout=60, what="gunicorn")
        yield {"base_url": base_url, "token": token, "relay": relay, "log": tmp_path / "web.log"}
    finally:
        if web is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(web.pid, signal.SIGTERM)
            try:
                web.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(web.pid, signal.SIGKILL)
                web.wait(timeout=10)
        relay.cut()
        with server.admin() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))


def _signed_in(base_url: str) -> requests.Session:
    browser = requests.Session()
    form = browser.get(f"{base_url}/accounts/login/", timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert csrf, form.text
    answer = browser.post(
        f"{base_url}/accounts/login/",
        {"username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": csrf.group(1)},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302, answer.text
    return browser


def _everything(site: dict, browser: requests.Session) -> dict[str, requests.Response]:
    """Each page with the session, the API with the token and with the session."""
    base_url = site["base_url"]
    answers = {path: browser.get(f"{base_url}{path}", timeout=10) for path in PAGES}
    bearer = {"Authorization": f"Bearer {site['token']}"}
    answers["api with a token"] = requests.get(f"{base_url}{API}", headers=bearer, timeout=10)
    answers["api with the session"] = browser.get(f"{base_url}{API}", timeout=10)
    return answers


def test_pages_and_the_api_answer_503_with_retry_after_while_the_database_is_down_then_recover(outage_site):
    browser = _signed_in(outage_site["base_url"])
    before = _everything(outage_site, browser)
    assert {what: answer.status_code for what, answer in before.items()} == dict.fromkeys(before, 200)

    outage_site["relay"].cut()
    during = _everything(outage_site, browser)
    assert {what: answer.status_code for what, answer in during.items()} == dict.fromkeys(during, 503)
    for what, answer in during.items():
        assert answer.headers["Retry-After"] == "30", what
        assert "Traceback" not in answer.text, what
        assert "OperationalError" not in answer.text, what
    for path in PAGES:
        assert during[path].headers["Content-Type"].startswith("text/html")
        assert "cannot reach its database" in during[path].text
    for what in ("api with a token", "api with the session"):
        assert during[what].headers["Content-Type"].startswith("application/json")
        assert "database is unavailable" in during[what].json()["detail"]

    outage_site["relay"].restore()
    after = _everything(outage_site, browser)
    assert {what: answer.status_code for what, answer in after.items()} == dict.fromkeys(after, 200)
    assert after["api with a token"].json()["items"] == []
