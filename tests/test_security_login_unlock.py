"""Administrators lift sign-in locks from the admin (the list of locks in force, or the users' list) and with
`manage.py login_unlock`; every lift is audited beside the lock it lifts."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from playwright.sync_api import expect

from accounts import known_clients, throttling
from accounts.models import LoginLock
from audit.models import AuditEntry

GUESSER = "203.0.113.7"
ELSEWHERE = "198.51.100.20"
RIGHT = "the-right-password"
NAMES = ("victim", "other", "nobody-0", "nobody-1", "nobody-2")
ADDRESSES = (GUESSER, ELSEWHERE, "127.0.0.1")


@pytest.fixture(autouse=True)
def _fast_password_hashing(request, settings):
    # Every attempt checks a password; Django's own fast hasher for tests keeps these tests short. The running
    # system of the browser test has the real hashers, so its users keep them.
    if "live" not in request.fixturenames:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _forget_counts():
    """Failure counts live in the shared cache, which outlives the test's database."""
    yield
    for name in NAMES:
        known_clients.forget(name)
        for ip in ADDRESSES:
            throttling.reset(username=name, ip=ip)


@pytest.fixture
def victim(make_user):
    return make_user("victim", RIGHT)


@pytest.fixture
def root_client(make_user):
    client = Client()
    client.force_login(make_user("root", "root-password", is_staff=True, is_superuser=True))
    return client


def _sign_in(password: str, *, ip: str = GUESSER, username: str = "victim", client: Client | None = None):
    client = client or Client()
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def _lock_out(*, ip: str = GUESSER, username: str = "victim") -> LoginLock:
    for attempt in range(5):
        _sign_in(f"guess-{attempt}", ip=ip, username=username)
    return LoginLock.objects.get(username=username, address=ip)


def _unlocks():
    return AuditEntry.objects.filter(action="login_unlocked").order_by("id")


# --- The admin ----------------------------------------------------------------------------------


def test_the_admin_lists_the_locks_in_force_and_lifting_one_lets_the_user_in_and_is_audited(victim, root_client):
    lock = _lock_out()
    page = root_client.get("/admin/accounts/loginlock/").content.decode()
    assert "victim" in page
    assert GUESSER in page
    assert "Account, from one address" in page

    response = root_client.post(
        "/admin/accounts/loginlock/",
        {"action": "unlock_selected", "_selected_action": [lock.pk]},
        REMOTE_ADDR=ELSEWHERE,
        follow=True,
    )
    assert "Lifted 1 sign-in lock(s)" in response.content.decode()
    assert not LoginLock.objects.exists()
    assert _sign_in(RIGHT).status_code == 302

    taken = AuditEntry.objects.get(action="login_throttled")
    lifted = _unlocks().get()
    assert lifted.id > taken.id
    assert (lifted.actor_username, lifted.ip, lifted.target_id) == ("root", ELSEWHERE, "victim")
    assert lifted.details["via"] == "admin"
    assert (lifted.details["username"], lifted.details["address"], lifted.details["locked"]) == (
        "victim",
        GUESSER,
        "user_ip",
    )


@override_settings(LOGIN_THROTTLE_USER_FAILURES=6)
def test_the_users_list_lifts_every_lock_of_the_selected_users_and_no_one_elses(victim, make_user, root_client):
    other = make_user("other", RIGHT)
    _lock_out(ip=GUESSER)  # victim from one address ...
    for n in range(6):  # ... and account-wide
        _sign_in("guess", ip=f"203.0.113.{n + 100}")
    _lock_out(username="other")
    assert LoginLock.objects.filter(username="victim").count() == 2

    root_client.post("/admin/auth/user/", {"action": "unlock_sign_in", "_selected_action": [victim.pk]})
    assert not LoginLock.objects.filter(username="victim").exists()
    assert LoginLock.objects.filter(username=other.username).count() == 1
    assert _sign_in(RIGHT).status_code == 302
    assert sorted(entry.details["locked"] for entry in _unlocks()) == ["user", "user_ip"]
    assert {entry.actor_username for entry in _unlocks()} == {"root"}


def test_a_staff_member_who_may_only_view_locks_cannot_lift_one(victim, make_user):
    lock = _lock_out()
    clerk = make_user("clerk", "clerk-password", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_loginlock"))
    staff = Client()
    staff.force_login(clerk)
    assert "victim" in staff.get("/admin/accounts/loginlock/").content.decode()
    staff.post("/admin/accounts/loginlock/", {"action": "unlock_selected", "_selected_action": [lock.pk]})
    assert staff.post(f"/admin/accounts/loginlock/{lock.pk}/delete/", {"post": "yes"}).status_code == 403
    assert LoginLock.objects.count() == 1
    assert not _unlocks().exists()


# --- manage.py login_unlock ---------------------------------------------------------------------


def _command(*args: str) -> str:
    out = StringIO()
    call_command("login_unlock", *args, stdout=out)
    return out.getvalue()


def test_login_unlock_lifts_the_users_lock_at_one_address_and_audits_it(victim):
    _lock_out(ip=GUESSER)
    _lock_out(ip=ELSEWHERE)

    output = _command("victim", "--address", GUESSER)
    assert f"Lifted: Account, from one address: victim from {GUESSER}" in output
    assert _sign_in(RIGHT, ip=GUESSER).status_code == 302
    assert _sign_in(RIGHT, ip=ELSEWHERE).status_code == 429

    lifted = _unlocks().get()
    assert lifted.actor_username == ""
    assert lifted.details["via"] == "manage.py login_unlock"
    assert (lifted.details["username"], lifted.details["address"]) == ("victim", GUESSER)


def test_login_unlock_with_a_user_name_alone_lifts_its_locks_from_every_address(victim):
    _lock_out(ip=GUESSER)
    _lock_out(ip=ELSEWHERE)
    output = _command("VICTIM")
    assert output.count("Lifted:") == 2
    assert _sign_in(RIGHT, ip=ELSEWHERE).status_code == 302
    assert _unlocks().count() == 2


@override_settings(LOGIN_THROTTLE_IP_FAILURES=3)
def test_login_unlock_lists_and_lifts_the_lock_of_an_address(victim):
    for n in range(3):
        _sign_in("x", username=f"nobody-{n}")
    assert re.search(rf"Address, every account: {re.escape(GUESSER)}, .*, \d+ s left", _command("--list"))

    assert "Lifted:" in _command("--address", GUESSER)
    assert _command("--list") == ""
    assert _sign_in(RIGHT).status_code == 302
    assert _unlocks().get().details["locked"] == "ip"


def test_login_unlock_says_so_when_nothing_matches_and_audits_nothing(victim):
    _lock_out()
    assert _command("someone-else") == "No sign-in lock in force matched.\n"
    assert LoginLock.objects.count() == 1
    assert not _unlocks().exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [((), "Name a USERNAME"), (("victim", "--address", "not-an-address"), "is not an IP address")],
)
def test_login_unlock_refuses_bad_input_and_changes_nothing(victim, args, message):
    _lock_out()
    with pytest.raises(CommandError, match=message):
        call_command("login_unlock", *args, stdout=StringIO())
    assert LoginLock.objects.count() == 1
    assert not _unlocks().exists()


# --- In the browser -----------------------------------------------------------------------------


@pytest.mark.browser
def test_a_locked_out_user_sees_the_seconds_left_and_signs_in_once_an_admin_lifts_the_lock(
    live, browser, page, login, make_user
):
    make_user("victim", RIGHT)
    make_user("root", "root-password", is_staff=True, is_superuser=True)
    page.goto(live.url("/accounts/login/"))
    for attempt in range(5):
        page.fill("#id_username", "victim")
        page.fill("#id_password", f"guess-{attempt}")
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")
    expect(page.locator("p.error")).to_contain_text(re.compile(r"try again in \d+ s"))

    admin_context = browser.new_context(timezone_id="UTC")
    try:
        admin_page = admin_context.new_page()
        login(admin_page, "root", "root-password")
        admin_page.goto(live.url("/admin/accounts/loginlock/"))
        row = admin_page.locator("#result_list tbody tr", has_text="victim")
        expect(row).to_contain_text("Account, from one address")
        row.locator("input[name=_selected_action]").check()
        admin_page.select_option("select[name=action]", "unlock_selected")
        admin_page.click("button[name=index]")
        expect(admin_page.locator(".messagelist")).to_contain_text("Lifted 1 sign-in lock(s)")
    finally:
        admin_context.close()

    login(page, "victim", RIGHT)
    assert AuditEntry.objects.filter(action="login_unlocked", actor_username="root").count() == 1
    assert AuditEntry.objects.filter(action="login", actor_username="victim").count() == 1
