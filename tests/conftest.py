"""Fixtures shared by the whole suite.

End-to-end tests use `live`: the real web server (dashboard + embedded engine), a Celery worker with beat and
the engine worker, all on the test database, with the default connection pointing at that server. Such tests
run in `transactional_db` so that the processes see what the test writes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command, get_commands

from tests.stack import Stack


@pytest.fixture(scope="session", autouse=True)
def _static_files(tmp_path_factory):
    """Collected static files, as production serves them (the manifest storage needs them)."""
    if not Path(settings.STATIC_ROOT, "staticfiles.json").exists() or os.environ.get("CI"):
        call_command("collectstatic", "--noinput", verbosity=0)


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
    from jobs.services import connection_save

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
