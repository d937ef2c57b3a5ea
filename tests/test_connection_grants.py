"""Connections are granted to teams: who sees them, lists their scripts and submits to them, on the pages and
through the API; the default connection; users in no team; the admin and the command that grant them; and the
migration that granted every existing connection to every existing team.

The route-by-route rules for a connection granted to another team are in test_teams_access.py.
"""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection as db_connection
from django.db.migrations.executor import MigrationExecutor

from accounts.models import Membership, Team
from accounts.tokens import token_create
from audit.models import AuditEntry
from jobs.models import Connection, Job
from jobs.services.jobs import connection_save, job_create
from jobs.services.specs import parse_job_request
from jobs.states import JobKind

pytestmark = pytest.mark.django_db

RISK_URL = "http://127.0.0.1:9/risk-path"
PRICING_URL = "http://127.0.0.1:9/pricing-path"


@pytest.fixture
def teams(settings):
    # Sign-ins here are force_login: a fast hasher keeps the set-up cheap. No retries to OML (a refused port).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.OML_GET_RETRIES = 0
    return Team.objects.create(name="Risk"), Team.objects.create(name="Pricing")


@pytest.fixture
def people(make_user, teams):
    risk, pricing = teams
    users = {name: make_user(name) for name in ("ana", "bob", "aud", "loner", "root")}
    users["root"].is_staff = users["root"].is_superuser = True
    users["root"].save()
    Membership.objects.create(user=users["ana"], team=risk, role=Membership.Role.ANALYST)
    Membership.objects.create(user=users["bob"], team=pricing, role=Membership.Role.ANALYST)
    Membership.objects.create(user=users["aud"], team=risk, role=Membership.Role.AUDITOR)
    return users


@pytest.fixture
def conns(teams):
    risk, pricing = teams
    return {
        "risk": connection_save(name="Risk OML", base_url=RISK_URL, username="RISK_USER", password="pw", teams=[risk]),
        "pricing": connection_save(
            name="Pricing OML", base_url=PRICING_URL, username="PRICING_USER", password="pw", teams=[pricing]
        ),
    }


def bearer(user, **kwargs) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token_create(user=user, name='t', **kwargs)[1]}"}


def api_post(client, path: str, body: dict, user) -> tuple[int, dict]:
    response = client.post(f"/api/v1{path}", json.dumps(body), content_type="application/json", **bearer(user))
    return response.status_code, response.json()


# --- Seeing and listing -------------------------------------------------------------------------------------


def test_each_user_lists_the_connections_of_their_teams_and_admins_list_all(client, people, conns):
    seen = {}
    for name, user in people.items():
        response = client.get("/api/v1/connections", **bearer(user))
        assert response.status_code == 200
        seen[name] = sorted(item["name"] for item in response.json())
    assert seen == {
        "ana": ["Risk OML"],
        "bob": ["Pricing OML"],
        # An auditor sees the connections of the team they audit.
        "aud": ["Risk OML"],
        "loner": [],
        "root": ["Pricing OML", "Risk OML"],
    }


def test_the_pages_offer_only_the_connections_granted_to_the_users_teams(client, people, conns):
    client.force_login(people["ana"])
    for path in ("/jobs/new/", "/jobs/", "/analytics/"):
        page = client.get(path).content.decode()
        assert "Risk OML" in page, path
        assert "Pricing OML" not in page, path
        assert "pricing-path" not in page, path
    client.force_login(people["root"])
    page = client.get("/jobs/new/").content.decode()
    assert "Risk OML" in page
    assert "Pricing OML" in page


def test_a_history_filter_on_a_connection_of_another_team_is_not_accepted(client, people, conns):
    client.force_login(people["ana"])
    page = client.get("/jobs/", {"connection": conns["pricing"].pk}).content.decode()
    assert f'<option value="{conns["pricing"].pk}" selected' not in page
    assert "Pricing OML" not in page


def test_the_scripts_of_a_connection_of_another_team_answer_404_without_its_url(client, people, conns):
    pricing = conns["pricing"]
    client.force_login(people["ana"])
    page = client.get("/jobs/new/scripts/", {"connection": pricing.pk})
    assert page.status_code == 404
    api = client.get(f"/api/v1/connections/{pricing.pk}/scripts", **bearer(people["ana"]))
    assert api.status_code == 404
    assert api.json() == {"detail": "Not found."}
    for body in (page.content.decode(), api.content.decode()):
        assert "pricing-path" not in body
        assert "PRICING_USER" not in body
    # The same answer as for a connection that does not exist.
    assert client.get("/api/v1/connections/999999/scripts", **bearer(people["ana"])).json() == api.json()
    # Its own team lists them (the server is unreachable here: 502 says so).
    assert client.get(f"/api/v1/connections/{pricing.pk}/scripts", **bearer(people["bob"])).status_code == 502


# --- Submitting ---------------------------------------------------------------------------------------------


def test_submitting_to_a_connection_of_another_team_is_refused_with_403_through_page_and_api(client, people, conns):
    pricing = conns["pricing"]
    ana = people["ana"]
    body = {"kind": "do_eval", "script": "return_df"}
    for connection in (pricing.pk, "Pricing OML"):
        status, answer = api_post(client, "/jobs", {**body, "connection": connection}, ana)
        assert status == 403
        assert "not granted" in answer["detail"]
        assert "pricing-path" not in answer["detail"]
    client.force_login(ana)
    page = client.post("/jobs/new/", {**body, "connection": pricing.pk})
    assert page.status_code == 403
    assert "not granted" in page.content.decode()
    preview = client.post("/jobs/new/preview/", {**body, "connection": pricing.pk}).content.decode()
    assert "not granted" in preview
    assert "pricing-path" not in preview
    assert not Job.objects.exists()
    # A connection of their own team is fine.
    assert api_post(client, "/jobs", {**body, "connection": conns["risk"].pk}, ana)[0] == 201
    assert Job.objects.get().connection == conns["risk"]


def test_the_submit_service_refuses_a_connection_not_granted_to_the_owner(people, conns):
    from jobs.selectors.access import ConnectionDenied

    spec = parse_job_request({"kind": "do_eval", "script": "return_df", "connection": conns["pricing"].pk})
    with pytest.raises(ConnectionDenied):
        job_create(owner=people["ana"], spec=spec)
    assert not Job.objects.exists()
    assert job_create(owner=people["root"], spec=spec).connection == conns["pricing"]


def test_admins_submit_to_every_connection(client, people, conns):
    status, _ = api_post(
        client, "/jobs", {"kind": "do_eval", "script": "x", "connection": conns["pricing"].pk}, people["root"]
    )
    assert status == 201


def test_an_auditor_cannot_submit_even_to_the_connections_they_see(client, people, conns):
    status, answer = api_post(
        client, "/jobs", {"kind": "do_eval", "script": "x", "connection": conns["risk"].pk}, people["aud"]
    )
    assert status == 403
    assert "read-only" in answer["detail"]
    assert not Job.objects.exists()


def test_a_job_is_filed_under_the_team_the_connection_is_granted_to(client, people, conns, teams):
    risk, pricing = teams
    ana = people["ana"]
    Membership.objects.create(user=ana, team=pricing, role=Membership.Role.ANALYST)
    assert (
        api_post(client, "/jobs", {"kind": "do_eval", "script": "x", "connection": conns["pricing"].pk}, ana)[0] == 201
    )
    # "Pricing" comes first by name, but the Risk connection's job belongs to Risk.
    assert api_post(client, "/jobs", {"kind": "do_eval", "script": "x", "connection": conns["risk"].pk}, ana)[0] == 201
    assert {job.connection.name: job.team for job in Job.objects.all()} == {"Pricing OML": pricing, "Risk OML": risk}


def test_rerunning_a_job_whose_connection_is_no_longer_granted_is_refused(client, people, conns, teams):
    risk, _ = teams
    ana = people["ana"]
    job = Job.objects.create(owner=ana, team=risk, connection=conns["risk"], kind=JobKind.DO_EVAL, script_name="x")
    conns["risk"].teams.clear()
    status, answer = api_post(client, f"/jobs/{job.uuid}/rerun", {}, ana)
    assert status == 403
    assert "granted" in answer["detail"]
    client.force_login(ana)
    response = client.post(f"/jobs/{job.uuid}/rerun/", follow=True)
    assert "cannot be re-run" in response.content.decode()
    assert Job.objects.count() == 1
    # The job itself stays visible, with its connection's name, to its owner and the team's auditor.
    for user in (ana, people["aud"]):
        client.force_login(user)
        page = client.get(f"/jobs/{job.uuid}/")
        assert page.status_code == 200
        assert "Risk OML" in page.content.decode()
        assert str(job.uuid) in client.get("/jobs/").content.decode()


# --- Users who may submit nowhere ---------------------------------------------------------------------------


def test_a_user_in_no_team_is_told_why_they_cannot_submit(client, people, conns):
    loner = people["loner"]
    client.force_login(loner)
    page = client.get("/jobs/new/")
    assert page.status_code == 403
    text = page.content.decode()
    assert "not a member of any team" in text
    assert 'id="compose-form"' not in text
    assert (
        client.post("/jobs/new/", {"kind": "do_eval", "script": "x", "connection": conns["risk"].pk}).status_code == 403
    )
    status, answer = api_post(client, "/jobs", {"kind": "do_eval", "script": "x"}, loner)
    assert status == 403
    assert "not a member of any team" in answer["detail"]
    assert not Job.objects.exists()


def test_a_team_without_any_granted_connection_is_told_so(client, people, conns):
    Connection.teams.through.objects.all().delete()
    client.force_login(people["ana"])
    assert "No connection is granted to your teams" in client.get("/jobs/new/").content.decode()
    status, answer = api_post(client, "/jobs", {"kind": "do_eval", "script": "x"}, people["ana"])
    assert status == 403
    assert "No connection is granted to your teams" in answer["detail"]


def test_the_default_connection_is_preselected_only_for_those_who_may_use_it(client, people, conns, teams):
    risk, _ = teams
    pricing = conns["pricing"]
    connection_save(
        connection=pricing,
        name=pricing.name,
        base_url=PRICING_URL,
        username="PRICING_USER",
        password=None,
        is_default=True,
    )
    client.force_login(people["bob"])
    page = client.get("/jobs/new/").content.decode()
    assert f'<option value="{pricing.pk}" selected>' in page
    # Ana may not use the default, and has two connections: she is asked to choose.
    connection_save(name="Risk spare", base_url=RISK_URL, username="U", password="pw", teams=[risk])
    client.force_login(people["ana"])
    page = client.get("/jobs/new/").content.decode()
    assert '<option value="" selected>Choose a connection' in page
    assert f'value="{pricing.pk}"' not in page
    # The script picker opens on no connection rather than on the default she may not see.
    picker = client.get("/jobs/new/scripts/").content.decode()
    assert "Pricing OML" not in picker
    assert "Choose a connection to list its scripts." in picker
    client.force_login(people["loner"])
    assert "No connection is granted to you" in client.get("/jobs/new/scripts/").content.decode()
    # A request naming no connection does not fall back on it either.
    status, answer = api_post(client, "/jobs", {"kind": "do_eval", "script": "x"}, people["ana"])
    assert status == 400
    assert answer["errors"]["connection"] == [
        "The default connection is not granted to your teams; choose a connection."
    ]
    assert not Job.objects.exists()


# --- Granting -----------------------------------------------------------------------------------------------


def test_admins_grant_a_connection_to_teams_in_the_admin_and_the_grant_is_audited(client, people, teams):
    risk, pricing = teams
    client.force_login(people["root"])
    form = {
        "name": "New OML",
        "base_url": "https://oml.example.com",
        "api_version": "v2",
        "username": "OMLUSER",
        "password": "Pass-123456",
        "poll_budget": 5,
        "teams": [pricing.pk],
    }
    assert client.post("/admin/jobs/connection/add/", form).status_code == 302
    added = Connection.objects.get(name="New OML")
    assert list(added.teams.all()) == [pricing]
    assert "Pricing" in client.get("/admin/jobs/connection/").content.decode()
    client.post(f"/admin/jobs/connection/{added.pk}/change/", {**form, "password": "", "teams": [risk.pk, pricing.pk]})
    assert set(added.teams.all()) == {risk, pricing}
    entries = AuditEntry.objects.filter(target_type="connection").order_by("id")
    assert [(e.action, e.details["teams"]) for e in entries] == [
        ("connection_created", ["Pricing"]),
        ("connection_changed", ["Pricing", "Risk"]),
    ]
    assert entries[1].details["changed"] == ["teams"]
    # Bob (Pricing) may use it now; ana (Risk) too after the change.
    assert (
        api_post(client, "/jobs", {"kind": "do_eval", "script": "x", "connection": added.pk}, people["ana"])[0] == 201
    )


def test_the_connection_save_command_grants_to_named_or_all_teams(people, teams, monkeypatch):
    risk, pricing = teams
    monkeypatch.setenv("OML_TEST_PASSWORD", "pw")
    out = StringIO()
    call_command(
        "connection_save", "Cmd", "https://c.example.com", "U", "--password-env", "OML_TEST_PASSWORD", stdout=out
    )
    saved = Connection.objects.get(name="Cmd")
    assert not saved.teams.exists()
    assert "only administrators may use it" in out.getvalue()
    call_command(
        "connection_save",
        "Cmd",
        "https://c.example.com",
        "U",
        "--team",
        "Risk",
        "--password-env",
        "OML_TEST_PASSWORD",
        stdout=out,
    )
    assert list(saved.teams.all()) == [risk]
    # Without --team or --all-teams, a change keeps the grants.
    call_command(
        "connection_save", "Cmd", "https://d.example.com", "U", "--password-env", "OML_TEST_PASSWORD", stdout=out
    )
    assert list(saved.teams.all()) == [risk]
    call_command(
        "connection_save",
        "Cmd",
        "https://d.example.com",
        "U",
        "--all-teams",
        "--password-env",
        "OML_TEST_PASSWORD",
        stdout=out,
    )
    assert set(saved.teams.all()) == {risk, pricing}
    with pytest.raises(CommandError, match="no team named 'Nobody'"):
        call_command(
            "connection_save",
            "Cmd",
            "https://e.example.com",
            "U",
            "--team",
            "Nobody",
            "--password-env",
            "OML_TEST_PASSWORD",
        )
    saved.refresh_from_db()
    assert saved.base_url == "https://d.example.com"
    assert set(saved.teams.all()) == {risk, pricing}


# --- The migration ------------------------------------------------------------------------------------------

BEFORE = [("jobs", "0005_audit_key_id"), ("accounts", "0004_oidc_identity")]
AFTER = [("jobs", "0006_connection_team_grants")]


@pytest.mark.django_db(transaction=True)
def test_the_migration_grants_every_existing_connection_to_every_existing_team():
    executor = MigrationExecutor(db_connection)
    leaves = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate(BEFORE)
        old = executor.loader.project_state(BEFORE).apps
        old_team, old_connection = old.get_model("accounts", "Team"), old.get_model("jobs", "Connection")
        team_ids = {old_team.objects.create(name=name).pk for name in ("Risk", "Pricing", "Ops")}
        connection_ids = {
            old_connection.objects.create(name=name, base_url=f"https://{name}.example.com", username="U").pk
            for name in ("a", "b")
        }
        executor = MigrationExecutor(db_connection)
        executor.migrate(AFTER)
        new = executor.loader.project_state(AFTER).apps
        grants = new.get_model("jobs", "Connection").teams.through.objects
        assert {(g.connection_id, g.team_id) for g in grants.all()} == {
            (c, t) for c in connection_ids for t in team_ids
        }
    finally:
        MigrationExecutor(db_connection).migrate(leaves)
