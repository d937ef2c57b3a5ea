"""LOCAL_PASSWORDS off: the sign-in forms accept only the break-glass superuser, everyone else is told to sign
in with the identity provider, and API tokens keep working."""

from __future__ import annotations

import pytest
from django.test import override_settings

from accounts import throttling
from accounts.tokens import token_create
from audit.models import AuditEntry

PASSWORDS_OFF = override_settings(
    LOCAL_PASSWORDS=False, BREAK_GLASS_USERNAME="root", OIDC_ENABLED=True, OIDC_PROVIDER_NAME="Corp SSO"
)


@pytest.fixture
def erin(make_user):
    user = make_user("erin", "erins-own-password")
    yield user
    throttling.reset(username="erin", ip="127.0.0.1")


def _sign_in(client, username: str, password: str, path: str = "/accounts/login/"):
    return client.post(path, {"username": username, "password": password})


@PASSWORDS_OFF
@override_settings(LOGIN_THROTTLE_FAILURES=1)
def test_with_local_passwords_off_a_local_user_is_refused_with_a_clear_message(client, erin):
    response = _sign_in(client, "erin", "erins-own-password")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Sign-in with a password is switched off on this site: sign in with Corp SSO." in page
    assert "Sign in with Corp SSO" in page
    assert "_auth_user_id" not in client.session
    refusal = AuditEntry.objects.get(action="login_refused")
    assert refusal.details == {"username": "erin", "reason": "local passwords are off"}
    # Not a guess: the password was never checked, and nothing counts towards the throttle.
    assert not AuditEntry.objects.filter(action="login_failed").exists()
    # With a limit of one failure, a counted attempt would have locked the account.
    assert not throttling.current_locks(username="erin").exists()


@PASSWORDS_OFF
def test_with_local_passwords_off_the_admin_sign_in_refuses_a_local_staff_user_too(client, make_user):
    make_user("sam", "sams-password", is_staff=True)
    client.post("/admin/login/?next=/admin/", {"username": "sam", "password": "sams-password"})
    assert "_auth_user_id" not in client.session
    throttling.reset(username="sam", ip="127.0.0.1")


@PASSWORDS_OFF
def test_with_local_passwords_off_the_break_glass_superuser_signs_in(client, make_user):
    root = make_user("root", "break-glass-password", is_staff=True, is_superuser=True)
    response = _sign_in(client, "root", "break-glass-password")
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(root.pk)


@PASSWORDS_OFF
def test_the_break_glass_name_on_an_account_that_is_no_superuser_does_not_sign_in(client, make_user):
    make_user("root", "break-glass-password")
    response = _sign_in(client, "root", "break-glass-password")
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    throttling.reset(username="root", ip="127.0.0.1")


@PASSWORDS_OFF
def test_with_local_passwords_off_api_tokens_keep_working(client, erin):
    _, secret = token_create(user=erin, name="ci")
    assert client.get("/api/v1/jobs", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200


def test_with_local_passwords_on_the_form_signs_local_users_in_and_shows_no_provider_button(client, erin):
    page = client.get("/accounts/login/").content.decode()
    assert "Sign in with" not in page
    response = _sign_in(client, "erin", "erins-own-password")
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(erin.pk)
