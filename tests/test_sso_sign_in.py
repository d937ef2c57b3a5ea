"""Sign-in through a real OpenID provider (tests/support/oidc_provider/, its own process): the groups claim sets
teams and roles at each sign-in, and a user whose groups stop granting access is refused at the next sign-in,
deactivated, their sessions ended and their API tokens stopped."""

from __future__ import annotations

import pytest
import requests
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.sessions.models import Session

from accounts.models import ApiToken, Membership, OidcIdentity
from accounts.tokens import token_create
from audit.models import AuditEntry
from tests.support.oidc import sign_in_through_provider

USERS = "omlpy-users"
ANALYSTS = "omlpy-risk-analysts"
AUDITORS = "omlpy-risk-auditors"
ADMINS = "omlpy-admins"


def _sign_in(stack, username: str) -> requests.Response:
    return sign_in_through_provider(requests.Session(), stack.base_url, username)


def _roles(username: str) -> dict[str, str]:
    return dict(Membership.objects.filter(user__username=username).values_list("team__name", "role"))


def _sessions_of(user) -> int:
    store = Session.get_session_store_class()()
    return sum(
        1
        for data in Session.objects.values_list("session_data", flat=True)
        if store.decode(data).get(SESSION_KEY) == str(user.pk)
    )


def _api_status(stack, secret: str) -> int:
    bearer = {"Authorization": f"Bearer {secret}"}
    return requests.get(stack.url("/api/v1/jobs"), headers=bearer, timeout=10).status_code


def test_groups_at_the_provider_become_roles_in_team_risk_and_admin(sso, oidc_provider):
    oidc_provider.sync(
        users=[
            {"username": "alice", "password": "alice", "groups": [USERS, ANALYSTS]},
            {"username": "bob", "password": "bob", "groups": [USERS, AUDITORS]},
            {"username": "carol", "password": "carol", "groups": [USERS, ADMINS, AUDITORS, ANALYSTS]},
        ]
    )
    for username in ("alice", "bob", "carol"):
        response = _sign_in(sso, username)
        assert response.status_code == 200, response.text[:500]
        assert response.url.startswith(sso.base_url)
        assert f"<span>{username}</span>" in response.text

    assert _roles("alice") == {"Risk": "analyst"}
    assert _roles("bob") == {"Risk": "auditor"}
    # Both Risk roles: the map's first entry for the team wins.
    assert _roles("carol") == {"Risk": "analyst"}
    users = {user.username: user for user in get_user_model().objects.filter(username__in=["alice", "bob", "carol"])}
    assert [(users[name].is_staff, users[name].is_superuser) for name in ("alice", "bob", "carol")] == [
        (False, False),
        (False, False),
        (True, True),
    ]
    assert not users["alice"].has_usable_password()
    assert OidcIdentity.objects.get(user=users["alice"]).issuer == oidc_provider.issuer

    logins = AuditEntry.objects.filter(action="login", details__via="sso")
    assert sorted(logins.values_list("actor_username", flat=True)) == ["alice", "bob", "carol"]
    added = AuditEntry.objects.filter(action="role_added", details__via="sso")
    assert sorted((e.details["user"], e.details["team"], e.details["role"]) for e in added) == [
        ("alice", "Risk", "analyst"),
        ("bob", "Risk", "auditor"),
        ("carol", "Risk", "analyst"),
    ]
    assert AuditEntry.objects.filter(action="team_created", details__team="Risk").count() == 1


def test_a_changed_group_changes_the_role_at_the_next_sign_in(sso, oidc_provider):
    oidc_provider.set_groups("dora", [USERS, ANALYSTS])
    assert _sign_in(sso, "dora").status_code == 200
    assert _roles("dora") == {"Risk": "analyst"}

    oidc_provider.set_groups("dora", [USERS, AUDITORS, ADMINS])
    assert _sign_in(sso, "dora").status_code == 200
    assert _roles("dora") == {"Risk": "auditor"}
    assert get_user_model().objects.get(username="dora").is_staff
    changed = AuditEntry.objects.get(action="role_changed", details__user="dora")
    assert (changed.details["previous_role"], changed.details["role"], changed.details["via"]) == (
        "analyst",
        "auditor",
        "sso",
    )


def test_a_user_removed_from_the_group_is_refused_deactivated_and_loses_sessions_and_tokens(sso, oidc_provider):
    oidc_provider.set_groups("dave", [USERS, ANALYSTS])
    browser_session = requests.Session()
    assert sign_in_through_provider(browser_session, sso.base_url, "dave").status_code == 200
    dave = get_user_model().objects.get(username="dave")
    _, secret = token_create(user=dave, name="nightly")
    assert _api_status(sso, secret) == 200
    assert _sessions_of(dave) == 1

    oidc_provider.set_groups("dave", [USERS])
    refused = _sign_in(sso, "dave")
    assert refused.status_code == 403
    assert "Sign-in refused" in refused.text
    assert "None of your groups at Test IdP grants a role on this site." in refused.text
    assert "its sessions are ended and its API tokens revoked" in refused.text

    dave.refresh_from_db()
    assert not dave.is_active
    assert _roles("dave") == {}
    assert _sessions_of(dave) == 0
    # The session opened before is signed out, and the token answers 401.
    answer = browser_session.get(sso.url("/jobs/"), allow_redirects=False, timeout=10)
    assert answer.status_code == 302
    assert "/accounts/login/" in answer.headers["Location"]
    assert _api_status(sso, secret) == 401
    assert ApiToken.objects.get(user=dave).revoked_at is not None

    actions = list(AuditEntry.objects.filter(actor=dave).order_by("id").values_list("action", flat=True))
    assert actions[-5:] == ["role_removed", "user_deactivated", "sessions_ended", "token_revoked", "login_refused"]
    ended = AuditEntry.objects.get(action="sessions_ended", actor=dave)
    assert ended.details["sessions"] == 1
    assert "no longer grant access" in ended.details["reason"]


def test_a_user_deprovisioned_by_the_claims_is_reactivated_when_they_grant_access_again(sso, oidc_provider):
    oidc_provider.set_groups("ivan", [USERS, ANALYSTS])
    assert _sign_in(sso, "ivan").status_code == 200
    ivan = get_user_model().objects.get(username="ivan")
    _, secret = token_create(user=ivan, name="laptop")
    oidc_provider.set_groups("ivan", [USERS])
    assert _sign_in(sso, "ivan").status_code == 403

    oidc_provider.set_groups("ivan", [USERS, AUDITORS])
    assert _sign_in(sso, "ivan").status_code == 200
    ivan.refresh_from_db()
    assert ivan.is_active
    assert _roles("ivan") == {"Risk": "auditor"}
    assert AuditEntry.objects.filter(action="user_reactivated", actor=ivan).count() == 1
    # A revoked token stays revoked: the user makes a new one.
    assert _api_status(sso, secret) == 401


def test_a_user_outside_the_required_group_is_refused_and_no_account_is_made(sso, oidc_provider):
    oidc_provider.set_groups("erin", [ANALYSTS])
    refused = _sign_in(sso, "erin")
    assert refused.status_code == 403
    assert "is not in the group that may use this site" in refused.text
    assert not get_user_model().objects.filter(username="erin").exists()
    entry = AuditEntry.objects.get(action="login_refused")
    assert (entry.details["username"], entry.details["reason"]) == ("erin", "not in the required group")


def test_a_user_an_administrator_deactivated_stays_out_whatever_the_groups(sso, oidc_provider):
    oidc_provider.set_groups("judy", [USERS, ANALYSTS])
    assert _sign_in(sso, "judy").status_code == 200
    get_user_model().objects.filter(username="judy").update(is_active=False)
    refused = _sign_in(sso, "judy")
    assert refused.status_code == 403
    assert "Your account here is deactivated" in refused.text


def test_a_local_user_of_the_same_name_is_linked_and_the_break_glass_account_never_signs_in_through_it(
    sso, oidc_provider, make_user
):
    local = make_user("kate")
    unmapped = make_user("lena", is_staff=True)
    make_user("root", is_superuser=True, is_staff=True)
    oidc_provider.sync(
        users=[
            {"username": "kate", "password": "kate", "groups": [USERS, ANALYSTS]},
            {"username": "lena", "password": "lena", "groups": [USERS]},
            {"username": "root", "password": "root", "groups": [USERS, ADMINS]},
        ]
    )
    assert _sign_in(sso, "kate").status_code == 200
    assert OidcIdentity.objects.get(user=local).subject
    assert _roles("kate") == {"Risk": "analyst"}
    # A local account whose groups grant nothing is refused, and neither linked nor changed.
    assert _sign_in(sso, "lena").status_code == 403
    unmapped.refresh_from_db()
    assert (unmapped.is_active, unmapped.is_staff) == (True, True)
    assert not OidcIdentity.objects.filter(user=unmapped).exists()

    refused = _sign_in(sso, "root")
    assert refused.status_code == 403
    assert not OidcIdentity.objects.filter(user__username="root").exists()
    assert AuditEntry.objects.get(action="login_refused", details__username="root").details["reason"] == (
        "the break-glass account never signs in through the provider"
    )


@pytest.mark.parametrize(
    ("query", "status", "text"),
    [
        ("?code=forged&state=forged", 400, "This sign-in attempt is no longer valid"),
        ("?error=access_denied&error_description=The+user+said+no", 403, "answered “access_denied: The user said no”"),
    ],
)
def test_a_callback_that_is_not_an_answer_to_our_request_gets_a_clear_page(sso, query, status, text):
    response = requests.get(sso.url(f"/oidc/callback/{query}"), timeout=10)
    assert response.status_code == status
    assert text in response.text
    assert AuditEntry.objects.filter(action="login_failed", details__via="sso").count() == 1


def test_a_callback_with_a_state_this_browser_did_not_start_answers_400(sso):
    session = requests.Session()
    started = session.get(sso.url("/oidc/authenticate/"), allow_redirects=False, timeout=10)
    assert started.status_code == 302
    response = session.get(sso.url("/oidc/callback/?code=x&state=not-the-one-sent"), timeout=10)
    assert response.status_code == 400
    assert "could not be verified" in response.text
