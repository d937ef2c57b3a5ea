"""OIDC_ROLE_MAP's format, and the single sign-on settings refused at start with a message saying what to fix."""

from __future__ import annotations

import re

import pytest
from django.test import override_settings

from accounts.role_map import RoleMapEntry, RoleMapError, grants_for, groups_from_claim, parse_role_map
from audit.models import AuditEntry
from tests.stack import free_port
from tests.test_settings_refusals import start

EXAMPLE = "omlpy-risk-analysts=Risk:analyst, omlpy-risk-auditors=Risk:auditor,omlpy-admins=*:admin"


def test_the_role_map_reads_group_team_and_role_of_each_entry_in_order():
    assert parse_role_map(EXAMPLE) == (
        RoleMapEntry("omlpy-risk-analysts", "Risk", "analyst"),
        RoleMapEntry("omlpy-risk-auditors", "Risk", "auditor"),
        RoleMapEntry("omlpy-admins", "*", "admin"),
    )
    # A group may hold "=" (the entry splits at its last one), a team a space; empty entries are skipped.
    assert parse_role_map("cn=risk=Risk Team:analyst,,") == (RoleMapEntry("cn=risk", "Risk Team", "analyst"),)
    assert parse_role_map("") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("omlpy-risk-analysts", "entry 1 ('omlpy-risk-analysts'): expected GROUP=TEAM:ROLE"),
        ("g=Risk", "expected GROUP=TEAM:ROLE"),
        ("=Risk:analyst", "expected GROUP=TEAM:ROLE"),
        ("g=Risk:lead", "the role must be analyst, auditor or admin, not 'lead'"),
        ("g=Risk:admin", "admin is not a team role; write g=*:admin"),
        ("g=*:analyst", "team * takes only the admin role"),
        ("g=" + "T" * 101 + ":analyst", "a team name has at most 100 characters"),
        ("g=Risk:analyst,g=Risk:auditor", "entry 2 ('g=Risk:auditor'): entry 1 already gives group 'g' a role"),
    ],
)
def test_a_role_map_entry_that_does_not_parse_is_named_with_the_reason(text, message):
    with pytest.raises(RoleMapError, match=re.escape(message)):
        parse_role_map(text)


def test_grants_take_the_first_role_per_team_and_admin_from_any_admin_group():
    entries = parse_role_map(EXAMPLE + ",omlpy-risk-auditors=Audit:auditor")
    grants = grants_for(entries, ["omlpy-risk-auditors", "omlpy-risk-analysts", "unmapped"])
    assert grants.teams == {"Risk": "analyst", "Audit": "auditor"}
    assert not grants.admin
    assert grants.matched_groups == ("omlpy-risk-analysts", "omlpy-risk-auditors")
    assert grants_for(entries, ["omlpy-admins"]).admin
    assert not grants_for(entries, ["unmapped", "OMLPY-RISK-ANALYSTS"]).any


def test_the_group_claim_may_be_a_list_or_a_single_name():
    assert groups_from_claim(["a", 3, "b"]) == ["a", "b"]
    assert groups_from_claim("a") == ["a"]
    assert groups_from_claim(None) == []
    assert groups_from_claim({"a": 1}) == []


SSO_ON = {"OIDC_ENABLED": "true", "OIDC_ISSUER": "https://login.example.com", "OIDC_ROLE_MAP": EXAMPLE}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"OIDC_ROLE_MAP": "g=Risk:lead"}, "OIDC_ROLE_MAP entry 1 ('g=Risk:lead'): the role must be analyst"),
        ({**SSO_ON}, "OIDC_CLIENT_ID and OIDC_CLIENT_SECRET must be set"),
        (
            {**SSO_ON, "OIDC_CLIENT_ID": "c", "OIDC_CLIENT_SECRET": "s", "OIDC_ISSUER": "http://login.example.com"},
            "OIDC_ISSUER must use https (plain http only on a loopback address)",
        ),
        ({"LOCAL_PASSWORDS": "off"}, "LOCAL_PASSWORDS is off but OIDC_ENABLED is not"),
    ],
)
def test_a_bad_single_sign_on_setting_stops_the_start_naming_what_to_fix(overrides, message):
    done = start(**overrides)
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr
    assert message in done.stderr, done.stderr[-1500:]


@override_settings(OIDC_ENABLED=True, OIDC_PROVIDER_NAME="Corp SSO", OIDC_ISSUER=f"http://127.0.0.1:{free_port()}")
def test_a_provider_that_cannot_be_reached_answers_502_with_a_clear_page(client, db):
    # Nothing listens on that loopback port: the discovery request is refused at once.
    response = client.get("/oidc/authenticate/")
    assert response.status_code == 502
    assert "Corp SSO could not be reached or answered wrongly" in response.content.decode()
    assert AuditEntry.objects.get(action="login_failed").details["via"] == "sso"


def test_the_provider_routes_answer_404_while_single_sign_on_is_off(client, db):
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/?code=x&state=y").status_code == 404
