"""Fixtures shared by the whole suite.

End-to-end tests use `live`: the real web server (dashboard + embedded engine), a Celery worker with beat and
the engine worker, all on the test database, with the default connection pointing at that server. Such tests
run in `transactional_db` so that the processes see what the test writes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command, get_commands
from django.core.management.base import CommandError

from tests.stack import Stack


@pytest.fixture(scope="session", autouse=True)
def _static_files(tmp_path_factory):
    """Collected static files, as production serves them (the manifest storage needs them); collected again
    when a file of static/ is missing from the manifest or changed after it (added or edited since)."""
    manifest = Path(settings.STATIC_ROOT, "staticfiles.json")
    collected = set(json.loads(manifest.read_text()).get("paths", {})) if manifest.exists() else set()
    stamp = manifest.stat().st_mtime if manifest.exists() else 0.0
    files = [path for root in map(Path, settings.STATICFILES_DIRS) for path in root.rglob("*") if path.is_file()]
    sources = {
        path.relative_to(root).as_posix()
        for root in map(Path, settings.STATICFILES_DIRS)
        for path in files
        if path.is_relative_to(root)
    }
    stale = any(path.stat().st_mtime > stamp for path in files)
    if not sources <= collected or stale or os.environ.get("CI"):
        call_command("collectstatic", "--noinput", verbosity=0)


@pytest.fixture(scope="session", autouse=True)
def _flush_outlasts_a_deadlock():
    """Emptying the tables between transactional tests retries a deadlock.

    On PostgreSQL the flush truncates every table in one statement while the session's stack (worker, beat)
    keeps writing; a transaction of theirs that locks two tables in the other order deadlocks with it.
    PostgreSQL then rolls the truncation back whole, so trying it again is safe.
    """
    from django.core.management.commands import flush
    from django.db import OperationalError

    original = flush.Command.handle

    def handle(self, **options):
        for attempt in range(5):
            try:
                return original(self, **options)
            except CommandError as exc:
                cause = exc.__cause__
                if attempt == 4 or not (isinstance(cause, OperationalError) and "deadlock" in str(cause)):
                    raise
                time.sleep(0.2)
        return None

    flush.Command.handle = handle
    yield
    flush.Command.handle = original


@pytest.fixture(autouse=True)
def _audit_checkpoints_of_the_test(settings, tmp_path):
    """Checkpoints read in the test's process are the test's own: the session's stack keeps writing checkpoints
    of database states that earlier tests emptied into the shared folder."""
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path / "audit-checkpoints")


@pytest.fixture(scope="session")
def stack(django_db_setup, django_db_blocker, tmp_path_factory):
    """The running system, started once per test session."""
    log_dir = Path(settings.VAR_DIR) / "test-logs"
    running = Stack(log_dir=log_dir)
    try:
        running.start()
        yield running
    finally:
        running.stop()


def seed_engine() -> None:
    if "omlengine_seed" in get_commands():
        call_command("omlengine_seed", verbosity=0)


# Connections are granted to teams: the `analyst` fixture's team, to which `live` grants its connection.
ANALYSTS_TEAM = "Analysts"


def analysts_team():
    from accounts.models import Team

    return Team.objects.get_or_create(name=ANALYSTS_TEAM)[0]


@pytest.fixture
def live(transactional_db, stack):
    """The running system with a clean database: the engine seeded, the default connection at the stack,
    granted to the analysts' team."""
    from jobs.services.jobs import connection_save

    seed_engine()
    connection_save(
        name="Embedded engine",
        base_url=stack.base_url,
        username="OMLUSER",
        password="omluser",
        is_default=True,
        teams=[analysts_team()],
    )
    return stack


@pytest.fixture
def own_stack(transactional_db, tmp_path):
    """A whole system of the test's own, with `env` overriding settings: own_stack({"LOG_LEVEL": "DEBUG"}).
    The engine is seeded; every process is stopped when the test ends."""
    started: list[Stack] = []

    def start(env: dict[str, str]) -> Stack:
        seed_engine()
        running = Stack(log_dir=tmp_path / f"stack-{len(started)}", env=env)
        started.append(running)
        return running.start()

    try:
        yield start
    finally:
        for running in started:
            running.stop()


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model

    def make(username: str, password: str | None = None, **fields):
        return get_user_model().objects.create_user(username=username, password=password or username, **fields)

    return make


@pytest.fixture
def analyst(make_user):
    """An analyst of the analysts' team (ANALYSTS_TEAM), so that they may submit to the connections granted to it."""
    from accounts.models import Membership

    user = make_user("analyst")
    Membership.objects.create(user=user, team=analysts_team(), role=Membership.Role.ANALYST)
    return user


@pytest.fixture
def conn(db):
    """The default connection, granted to the analysts' team, at an address nobody serves (tests.factories)."""
    from tests.factories import unserved_connection

    return unserved_connection()


@pytest.fixture
def signed_in(client, analyst):
    """The test client signed in as `analyst`."""
    client.force_login(analyst)
    return client


# --- Browser ------------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (Playwright's own browser download is not used)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, timezone_id="UTC")
    context.set_default_timeout(20_000)
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture
def login(live):
    """Sign a Playwright page in through the real login form: login(page, "analyst")."""

    def sign_in(tab, username: str, password: str | None = None) -> None:
        tab.goto(live.url("/accounts/login/"))
        tab.fill("#id_username", username)
        tab.fill("#id_password", password or username)
        tab.click("button[type=submit]")
        tab.wait_for_load_state("networkidle")
        assert "/accounts/login/" not in tab.url, f"login as {username} failed"

    return sign_in


# --- Single sign-on -------------------------------------------------------------------------------

SSO_CLIENT_ID = "omlpy-dashboard"
SSO_CLIENT_SECRET = "test-client-secret-of-the-dashboard"
SSO_ROLE_MAP = "omlpy-risk-analysts=Risk:analyst,omlpy-risk-auditors=Risk:auditor,omlpy-admins=*:admin"


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory):
    """A real OpenID provider (django-oauth-toolkit) in its own process on loopback, once per test session."""
    from tests.support.oidc import OidcProvider

    provider = OidcProvider(tmp_path_factory.mktemp("oidc-provider"), log_dir=Path(settings.VAR_DIR) / "test-logs")
    try:
        provider.start()
        yield provider
    finally:
        provider.stop()


@pytest.fixture(scope="session")
def sso_stack(django_db_setup, django_db_blocker, oidc_provider):
    """The dashboard's web server signing in through `oidc_provider`, local passwords off but for `root`."""
    running = Stack(
        log_dir=Path(settings.VAR_DIR) / "test-logs" / "sso",
        env={
            "OIDC_ENABLED": "true",
            "OIDC_PROVIDER_NAME": "Test IdP",
            "OIDC_ISSUER": oidc_provider.issuer,
            "OIDC_CLIENT_ID": SSO_CLIENT_ID,
            "OIDC_CLIENT_SECRET": SSO_CLIENT_SECRET,
            "OIDC_SCOPES": "openid profile email groups",
            "OIDC_TEAM_CLAIM": "groups",
            "OIDC_ROLE_MAP": SSO_ROLE_MAP,
            "OIDC_REQUIRED_GROUP": "omlpy-users",
            "LOCAL_PASSWORDS": "off",
            "BREAK_GLASS_USERNAME": "root",
        },
    )
    oidc_provider.sync(
        clients=[
            {
                "client_id": SSO_CLIENT_ID,
                "client_secret": SSO_CLIENT_SECRET,
                "redirect_uris": [running.url("/oidc/callback/")],
            }
        ]
    )
    try:
        running.start_web()
        yield running
    finally:
        running.stop()


@pytest.fixture
def sso(transactional_db, sso_stack):
    """The single sign-on stack with a clean database (the provider keeps its users between tests)."""
    return sso_stack
