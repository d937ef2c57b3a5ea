"""Password guessing is throttled per account and address, per account and per address, without letting a
guesser lock the owner out; a locked sign-in says how long is left, and every lock is audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.utils import timezone

from accounts import known_clients, throttling
from accounts.models import LoginLock
from audit.models import AuditEntry

GUESSER = "203.0.113.7"
ELSEWHERE = "198.51.100.20"
HOME = "192.0.2.50"
RIGHT = "the-right-password"


class SignIns:
    """Posts to a sign-in form, remembering every user name and address used so that their counts (kept in the
    shared cache, which outlives the test's database) are cleared after the test."""

    def __init__(self):
        self.names: set[str] = set()
        self.addresses: set[str] = set()

    def __call__(self, client, password: str, *, ip: str = GUESSER, username: str = "victim", path: str = ""):
        self.names.add(username)
        self.addresses.add(ip)
        data = {"username": username, "password": password}
        return client.post(path or "/accounts/login/", data, REMOTE_ADDR=ip)

    def forget(self) -> None:
        for name in self.names:
            known_clients.forget(throttling.normalize_username(name))
            for ip in self.addresses:
                throttling.reset(username=name, ip=ip)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Every attempt checks a password; Django's own fast hasher for tests keeps these tests short.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def sign_in():
    sign_ins = SignIns()
    yield sign_ins
    sign_ins.forget()


@pytest.fixture
def victim(make_user):
    return make_user("victim", RIGHT)


def _page(response) -> str:
    return response.content.decode()


def _signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_five_failures_for_admin_from_one_address_do_not_stop_admin_signing_in_from_another(sign_in, make_user):
    make_user("admin", RIGHT, is_staff=True, is_superuser=True)
    guesser = Client()
    for attempt in range(4):
        response = sign_in(guesser, f"guess-{attempt}", username="admin")
        assert response.status_code == 200
        assert "Please enter a correct username and password" in _page(response)
    fifth = sign_in(guesser, "guess-4", username="admin")
    assert fifth.status_code == 429
    assert "Too many failed sign-in attempts" in _page(fifth)

    # From the guessing address even the right password is refused ...
    assert sign_in(guesser, RIGHT, username="admin").status_code == 429
    assert not _signed_in(guesser)
    # ... while the owner, elsewhere, signs in as usual: on the site and on the admin's own page.
    owner = Client()
    assert sign_in(owner, RIGHT, username="admin", ip=ELSEWHERE).status_code == 302
    assert _signed_in(owner)
    admin_page = Client()
    response = sign_in(admin_page, RIGHT, username="admin", ip=ELSEWHERE, path="/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert _signed_in(admin_page)


@override_settings(LOGIN_THROTTLE_SECONDS=77)
def test_a_locked_sign_in_answers_429_with_the_seconds_left_on_the_page_and_in_retry_after(client, sign_in, victim):
    for attempt in range(5):
        response = sign_in(client, f"guess-{attempt}")
    assert response.status_code == 429
    assert response["Retry-After"] == "77"
    assert "try again in 77 s" in _page(response)

    # Time passes (the lock's end, as stored, is moved closer): the answer counts down with it.
    LoginLock.objects.update(locked_until=timezone.now() + timedelta(seconds=41.5))
    response = sign_in(client, RIGHT)
    assert response.status_code == 429
    assert response["Retry-After"] == "42"
    assert "try again in 42 s" in _page(response)

    LoginLock.objects.update(
        created_at=timezone.now() - timedelta(seconds=78), locked_until=timezone.now() - timedelta(seconds=1)
    )
    assert sign_in(client, RIGHT).status_code == 302
    assert _signed_in(client)


def test_the_admin_sign_in_page_is_refused_the_same_way_with_the_seconds_left(client, sign_in, make_user):
    make_user("admin", RIGHT, is_staff=True, is_superuser=True)
    for attempt in range(5):
        sign_in(client, f"guess-{attempt}", username="admin")
    response = sign_in(client, RIGHT, username="admin", path="/admin/login/?next=/admin/")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert f"try again in {response['Retry-After']} s" in _page(response)
    assert not _signed_in(client)


def test_locks_and_refused_attempts_are_audited_and_refusals_do_not_extend_the_lock(client, sign_in, victim):
    for attempt in range(5):
        sign_in(client, f"guess-{attempt}")
    lock = LoginLock.objects.get()
    for _ in range(3):
        sign_in(client, RIGHT)
    assert LoginLock.objects.get() == lock
    assert LoginLock.objects.get().locked_until == lock.locked_until

    taken = AuditEntry.objects.get(action="login_throttled", details__refused__isnull=True)
    assert taken.ip == GUESSER
    seconds = settings.LOGIN_THROTTLE_SECONDS
    assert taken.details == {"username": "victim", "locked": "user_ip", "failures": 5, "seconds": seconds}
    refused = AuditEntry.objects.filter(action="login_throttled", details__refused=True)
    assert refused.count() == 3
    assert all(0 < entry.details["retry_after"] <= seconds for entry in refused)
    assert AuditEntry.objects.filter(action="login_failed").count() == 5
    assert not AuditEntry.objects.filter(action="login").exists()


def test_a_successful_sign_in_before_the_limit_clears_the_count(client, sign_in, victim):
    for attempt in range(4):
        sign_in(client, f"guess-{attempt}")
    assert sign_in(client, RIGHT).status_code == 302
    client.logout()
    for attempt in range(4):
        sign_in(client, f"again-{attempt}")
    assert sign_in(client, RIGHT).status_code == 302


@override_settings(LOGIN_THROTTLE_USER_FAILURES=6)
def test_guessing_one_account_from_many_addresses_is_limited_but_not_from_its_known_addresses(sign_in, victim):
    owner = Client()
    assert sign_in(owner, RIGHT, ip=HOME).status_code == 302
    owner.logout()

    # One guess from each of six addresses: no single address reaches its own limit of five.
    answers = [sign_in(Client(), "guess", ip=f"203.0.113.{n}").status_code for n in range(100, 106)]
    assert answers == [200] * 5 + [429]
    lock = LoginLock.objects.get()
    assert (lock.scope, lock.username, lock.address) == ("user", "victim", None)
    assert AuditEntry.objects.filter(action="login_throttled", details__locked="user").count() == 1

    # A stranger's address is refused even with the right password ...
    stranger = Client()
    assert sign_in(stranger, RIGHT, ip="203.0.113.200").status_code == 429
    assert not _signed_in(stranger)
    # ... but the address the owner signed in from before is not, even from a browser with no cookie.
    assert sign_in(Client(), RIGHT, ip=HOME).status_code == 302


@override_settings(LOGIN_THROTTLE_USER_FAILURES=3)
def test_a_browser_that_signed_in_before_passes_the_account_wide_lock_from_a_new_address(sign_in, victim):
    owner = Client()
    assert sign_in(owner, RIGHT, ip=HOME).status_code == 302
    assert owner.cookies[known_clients.COOKIE_NAME]["httponly"]
    owner.post("/accounts/logout/")
    for n in range(3):
        sign_in(Client(), "guess", ip=f"203.0.113.{n + 100}")
    assert LoginLock.objects.filter(scope="user").exists()

    travelling = "198.51.100.99"
    # From a new address, a browser without the cookie, or with a cookie of its own making, is refused ...
    assert sign_in(Client(), RIGHT, ip=travelling).status_code == 429
    forger = Client()
    forger.cookies[known_clients.COOKIE_NAME] = owner.cookies[known_clients.COOKIE_NAME].value + "x"
    assert sign_in(forger, RIGHT, ip=travelling).status_code == 429
    # ... and the owner's browser is not.
    assert sign_in(owner, RIGHT, ip=travelling).status_code == 302
    assert _signed_in(owner)


@override_settings(LOGIN_THROTTLE_USER_FAILURES=3)
def test_the_owners_own_typos_from_a_known_address_do_not_count_towards_the_account_wide_limit(sign_in, victim):
    assert sign_in(Client(), RIGHT, ip=HOME).status_code == 302
    for attempt in range(4):
        sign_in(Client(), f"typo-{attempt}", ip=HOME)
    assert not LoginLock.objects.filter(scope="user").exists()
    assert sign_in(Client(), RIGHT, ip=ELSEWHERE).status_code == 302


@override_settings(LOGIN_THROTTLE_IP_FAILURES=3)
def test_one_address_spraying_many_accounts_is_limited_for_every_account_from_that_address(client, sign_in, victim):
    answers = [sign_in(client, "x", username=f"nobody-{n}").status_code for n in range(3)]
    assert answers == [200, 200, 429]
    lock = LoginLock.objects.get()
    assert (lock.scope, lock.username, lock.address) == ("ip", "", GUESSER)
    assert AuditEntry.objects.filter(action="login_throttled", details__locked="ip").exists()

    response = sign_in(client, RIGHT)
    assert response.status_code == 429
    assert "try again in" in _page(response)
    assert sign_in(Client(), RIGHT, ip=ELSEWHERE).status_code == 302
