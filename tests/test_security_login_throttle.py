"""Password guessing is throttled per user name and per address, with a clear message, and audited."""

from __future__ import annotations

import pytest
from django.test import override_settings

from accounts import throttling
from jobs.models import AuditEntry

GUESSER = "203.0.113.7"


@pytest.fixture
def victim(make_user):
    user = make_user("victim", "the-right-password")
    yield user
    throttling.reset(username="victim", ip=GUESSER)
    throttling.reset(ip="203.0.113.8")


def _sign_in(client, password: str, ip: str = GUESSER, username: str = "victim"):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_too_many_failed_logins_for_one_user_are_throttled_and_audited(client, victim):
    for attempt in range(5):
        response = _sign_in(client, f"guess-{attempt}")
        assert response.status_code == 200
    # Locked now: even the right password is refused, with a message that says why.
    response = _sign_in(client, "the-right-password")
    assert response.status_code == 200
    assert "Too many failed sign-in attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session

    locks = AuditEntry.objects.filter(action="login_throttled", details__locked="user")
    assert locks.filter(details__failures=5).count() == 1  # the lock itself
    assert locks.filter(details__refused=True).count() == 1  # the refused attempt
    assert AuditEntry.objects.filter(action="login_failed").count() == 5
    assert not AuditEntry.objects.filter(action="login").exists()


def test_the_lock_holds_from_another_address_and_on_the_admin_sign_in(client, victim):
    for attempt in range(5):
        _sign_in(client, f"guess-{attempt}")
    assert "Too many failed" in _sign_in(client, "the-right-password", ip="203.0.113.8").content.decode()
    client.post(
        "/admin/login/?next=/admin/",
        {"username": "victim", "password": "the-right-password"},
        REMOTE_ADDR="203.0.113.8",
    )
    assert "_auth_user_id" not in client.session


def test_a_successful_sign_in_before_the_limit_clears_the_count(client, victim):
    for attempt in range(4):
        _sign_in(client, f"guess-{attempt}")
    assert _sign_in(client, "the-right-password").status_code == 302
    client.logout()
    for attempt in range(4):
        _sign_in(client, f"again-{attempt}")
    assert _sign_in(client, "the-right-password").status_code == 302


@override_settings(LOGIN_THROTTLE_IP_FAILURES=3)
def test_one_address_guessing_many_user_names_is_throttled(client, victim, make_user):
    for n in range(3):
        _sign_in(client, "x", username=f"nobody-{n}")
    response = _sign_in(client, "the-right-password")
    assert "Too many failed" in response.content.decode()
    assert AuditEntry.objects.filter(action="login_throttled", details__locked="ip").exists()
    throttling.reset(username="victim", ip=GUESSER)
    for n in range(3):
        throttling.reset(username=f"nobody-{n}")
