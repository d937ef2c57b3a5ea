"""A real OpenID provider for the tests (tests/support/oidc_provider/, django-oauth-toolkit in OIDC mode),
started in a process of its own on a free loopback port, and the browserless sign-in through it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.stack import ROOT, free_port, wait_for

SETTINGS_MODULE = "tests.support.oidc_provider.settings"


class OidcProvider:
    """The provider's process. `sync` sets its users (with their groups) and clients while it runs."""

    def __init__(self, data_dir: Path, log_dir: Path):
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.issuer = f"{self.base_url}/o"
        self.env = {
            **{name: value for name, value in os.environ.items() if not name.startswith("DJANGO_")},
            "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
            "IDP_DATA_DIR": str(data_dir),
            "IDP_ISSUER": self.issuer,
            "IDP_SYNC_TOKEN": secrets.token_urlsafe(32),
            "PYTHONUNBUFFERED": "1",
        }
        self.proc: subprocess.Popen | None = None

    def _django(self, *args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, f"provider: django {' '.join(args)} failed:\n{done.stderr[-3000:]}"

    def start(self) -> OidcProvider:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        (self.data_dir / "signing-key.pem").write_bytes(pem)
        self._django("migrate", "--noinput", "--verbosity=0")
        log = open(self.log_dir / "oidc-provider.log", "ab")  # noqa: SIM115 - kept open for the process's life
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django", "runserver", f"127.0.0.1:{self.port}", "--noreload"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        wait_for(self._answers, timeout=60, what=f"OpenID provider on {self.base_url}")
        return self

    def _answers(self) -> bool:
        try:
            return requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=2).status_code == 200
        except requests.ConnectionError:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the provider exited; see {self.log_dir / 'oidc-provider.log'}") from None
            return False

    def sync(self, *, users: list[dict] | None = None, clients: list[dict] | None = None) -> None:
        """Create or update users ({"username", "password", "groups"}) and clients at the provider."""
        response = requests.post(
            f"{self.base_url}/test-support/sync/",
            data=json.dumps({"users": users or [], "clients": clients or []}),
            headers={"X-Sync-Token": self.env["IDP_SYNC_TOKEN"], "Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 204, f"provider sync: {response.status_code} {response.text[:300]}"

    def set_groups(self, username: str, groups: list[str]) -> None:
        self.sync(users=[{"username": username, "password": username, "groups": groups}])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def sign_in_through_provider(session: requests.Session, dashboard_url: str, username: str, password: str | None = None):
    """Sign in at the dashboard through the provider, as a browser would, without one: the dashboard sends us
    to the provider, whose sign-in form we fill when it asks; its answer comes back to the dashboard's callback.
    Returns the dashboard's last answer (the page after sign-in, or the refusal)."""
    response = session.get(f"{dashboard_url}/oidc/authenticate/", timeout=30)
    if "/login/" in response.url and not response.url.startswith(dashboard_url):
        token = _CSRF.search(response.text)
        assert token, f"no sign-in form at the provider: {response.status_code} {response.url}"
        response = session.post(
            response.url,
            data={"csrfmiddlewaretoken": token.group(1), "username": username, "password": password or username},
            timeout=30,
        )
    return response
