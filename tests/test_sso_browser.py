"""Single sign-on in Chromium: the login page's provider button, the provider's own sign-in page, and back; and
an administrator deactivating a user in the admin, which signs that user's open session out at once."""

from __future__ import annotations

import pytest
import requests
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.sessions.models import Session

from accounts.models import Membership
from accounts.tokens import token_create
from audit.models import AuditEntry

pytestmark = pytest.mark.browser


def _sign_in_through_the_provider(tab, stack, username: str) -> None:
    tab.goto(stack.url("/accounts/login/"))
    tab.get_by_role("link", name="Sign in with Test IdP").click()
    tab.wait_for_selector("#idp-username")
    assert not tab.url.startswith(stack.base_url), "the sign-in form should be the provider's"
    tab.fill("#idp-username", username)
    tab.fill("#idp-password", username)
    tab.click("#idp-submit")
    tab.wait_for_url(f"{stack.base_url}/**")
    tab.wait_for_load_state("networkidle")


def _open_sessions(user) -> int:
    store = Session.get_session_store_class()()
    return sum(
        1
        for data in Session.objects.values_list("session_data", flat=True)
        if store.decode(data).get(SESSION_KEY) == str(user.pk)
    )


def test_an_analyst_signs_in_through_the_provider_in_chromium(sso, oidc_provider, page):
    oidc_provider.set_groups("grace", ["omlpy-users", "omlpy-risk-analysts"])
    page.goto(sso.url("/jobs/"))
    assert "/accounts/login/" in page.url
    assert "only" in page.locator("#break-glass-note").inner_text()

    page.get_by_role("link", name="Sign in with Test IdP").click()
    page.wait_for_selector("#idp-username")
    page.fill("#idp-username", "grace")
    page.fill("#idp-password", "grace")
    page.click("#idp-submit")
    page.wait_for_url(f"{sso.base_url}/jobs/**")

    assert page.locator(".who span").inner_text() == "grace"
    membership = Membership.objects.select_related("team").get(user__username="grace")
    assert (membership.team.name, membership.role) == ("Risk", "analyst")
    assert AuditEntry.objects.filter(action="login", actor_username="grace", details__via="sso").count() == 1


def test_an_admin_deactivating_a_user_signs_out_their_open_session_and_stops_their_token(
    sso, oidc_provider, page, browser, make_user
):
    oidc_provider.set_groups("henry", ["omlpy-users", "omlpy-risk-analysts"])
    _sign_in_through_the_provider(page, sso, "henry")
    assert page.locator(".who span").inner_text() == "henry"
    henry = get_user_model().objects.get(username="henry")
    _, secret = token_create(user=henry, name="cron")
    bearer = {"Authorization": f"Bearer {secret}"}
    assert requests.get(sso.url("/api/v1/jobs"), headers=bearer, timeout=10).status_code == 200

    make_user("root", "break-glass-password-7f3a", is_staff=True, is_superuser=True)
    admin_context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        admin = admin_context.new_page()
        admin.goto(sso.url("/accounts/login/"))
        admin.fill("#id_username", "root")
        admin.fill("#id_password", "break-glass-password-7f3a")
        admin.click("form[method=post] button[type=submit]")
        admin.wait_for_url(f"{sso.base_url}/jobs/**")
        admin.goto(sso.url(f"/admin/auth/user/{henry.pk}/change/"))
        admin.uncheck("#id_is_active")
        admin.click("input[name=_save]")
        admin.wait_for_url(f"{sso.base_url}/admin/auth/user/")
    finally:
        admin_context.close()

    assert _open_sessions(henry) == 0
    page.reload()
    assert "/accounts/login/" in page.url
    assert requests.get(sso.url("/api/v1/jobs"), headers=bearer, timeout=10).status_code == 401
    ended = AuditEntry.objects.get(action="sessions_ended", details__user="henry")
    assert (ended.actor_username, ended.details["sessions"], ended.details["reason"]) == (
        "root",
        1,
        "deactivated by an administrator",
    )
    assert AuditEntry.objects.filter(action="token_revoked", details__owner="henry").count() == 1
