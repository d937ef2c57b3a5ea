"""Personal API tokens: shown once, stored hashed, listed by prefix, revocable, accepted by the API as Bearer."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from io import StringIO

import pytest
import requests
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import ApiToken
from accounts.tokens import token_create, user_for_token
from audit.models import AuditEntry
from jobs.models import Connection, Job
from jobs.services.jobs import job_result_store
from jobs.states import JobKind, JobState
from notifications.models import NotificationRule
from notifications.services import RuleInput, rule_create


def _create(client, name="ci"):
    response = client.post("/account/tokens/", {"name": name})
    assert response.status_code == 200
    return re.search(r'<code id="new-token">([^<]+)</code>', response.content.decode()).group(1), response


def test_a_new_token_is_shown_once_and_stored_only_as_its_hash(client, analyst):
    client.force_login(analyst)
    secret, response = _create(client)
    assert secret.startswith("omlpy_")
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    token = ApiToken.objects.get(user=analyst)
    assert token.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert token.prefix == secret[:12]
    listing = client.get("/account/tokens/").content.decode()
    assert token.prefix in listing
    assert secret not in listing


def test_user_for_token_finds_the_owner_and_notes_the_use(client, analyst):
    client.force_login(analyst)
    secret, _ = _create(client)
    assert user_for_token(secret) == analyst
    assert ApiToken.objects.get(user=analyst).last_used_at is not None
    assert user_for_token(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert user_for_token("") is None
    assert user_for_token("Bearer nonsense") is None


def test_a_revoked_token_no_longer_authenticates_and_both_events_are_audited(client, analyst):
    client.force_login(analyst)
    secret, _ = _create(client, "laptop")
    token = ApiToken.objects.get(user=analyst)
    assert client.get("/api/v1/jobs", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    response = client.post(f"/account/tokens/{token.pk}/revoke/")
    assert response.status_code == 302
    assert user_for_token(secret) is None
    client.logout()
    assert client.get("/api/v1/jobs", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 401
    entries = AuditEntry.objects.filter(target_type="api_token").order_by("id")
    assert [(e.action, e.details["prefix"]) for e in entries] == [
        ("token_created", token.prefix),
        ("token_revoked", token.prefix),
    ]
    assert secret not in str([e.details for e in entries])


def test_a_user_cannot_revoke_someone_elses_token(client, analyst, make_user):
    client.force_login(analyst)
    _create(client)
    token = ApiToken.objects.get(user=analyst)
    client.force_login(make_user("mallory"))
    assert client.post(f"/account/tokens/{token.pk}/revoke/").status_code == 404
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None


def test_the_apitoken_command_prints_a_working_token(analyst):
    out = StringIO()
    call_command("apitoken", "analyst", stdout=out)
    secret = out.getvalue().strip()
    assert user_for_token(secret) == analyst
    assert AuditEntry.objects.get(action="token_created").details["via"] == "command"


# --- Expiry and scope ---------------------------------------------------------------------------------------


def test_the_tokens_page_creates_a_token_with_the_chosen_lifetime_and_scope_and_shows_both(client, analyst, settings):
    settings.API_TOKEN_DEFAULT_DAYS = 30
    settings.API_TOKEN_MAX_DAYS = 60
    client.force_login(analyst)
    form = client.get("/account/tokens/").content.decode()
    assert 'name="days"' in form
    assert 'value="30"' in form
    assert 'max="60"' in form
    assert 'name="scope"' in form
    before = timezone.now()
    response = client.post("/account/tokens/", {"name": "reports", "days": "7", "scope": "read_only"})
    assert response.status_code == 200
    token = ApiToken.objects.get(user=analyst)
    assert token.scope == ApiToken.Scope.READ_ONLY
    assert before + timedelta(days=7) <= token.expires_at <= timezone.now() + timedelta(days=7)
    # The default: read-write, for API_TOKEN_DEFAULT_DAYS.
    client.post("/account/tokens/", {"name": "ci"})
    default = ApiToken.objects.get(user=analyst, name="ci")
    assert default.scope == ApiToken.Scope.READ_WRITE
    assert before + timedelta(days=30) <= default.expires_at <= timezone.now() + timedelta(days=30)
    listing = client.get("/account/tokens/").content.decode()
    rows = dict(re.findall(r'data-prefix="([^"]+)">(.*?)</tr>', listing, re.S))
    assert "Read only" in rows[token.prefix]
    assert token.expires_at.strftime("%Y-%m-%d") in rows[token.prefix]
    assert "Read and write" in rows[default.prefix]
    assert default.expires_at.strftime("%Y-%m-%d") in rows[default.prefix]
    entry = AuditEntry.objects.filter(action="token_created").order_by("id").first()
    assert entry.details["scope"] == "read_only"
    assert entry.details["expires_at"] == token.expires_at.isoformat()


@pytest.mark.parametrize("days", ["0", "61", "-3", "many", "99999999999999999999"])
def test_a_lifetime_out_of_bounds_is_refused_and_creates_no_token(client, analyst, settings, days):
    settings.API_TOKEN_MAX_DAYS = 60
    client.force_login(analyst)
    response = client.post("/account/tokens/", {"name": "x", "days": days})
    assert response.status_code == 400
    assert 'class="error"' in response.content.decode()
    assert not ApiToken.objects.exists()
    response = client.post("/account/tokens/", {"name": "x", "scope": "admin"})
    assert response.status_code == 400
    assert not ApiToken.objects.exists()


def test_an_expired_token_answers_401_saying_it_expired(client, analyst):
    _, secret = token_create(user=analyst, name="old", days=1)
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    expired = ApiToken.objects.get()
    for method in ("get", "post"):
        response = getattr(client, method)("/api/v1/jobs", HTTP_AUTHORIZATION=f"Bearer {secret}")
        assert response.status_code == 401
        detail = response.json()["detail"]
        assert "expired" in detail
        assert expired.expires_at.strftime("%Y-%m-%d %H:%M") in detail
    assert ApiToken.objects.get().last_used_at is None
    # An unknown token still gets the plain answer.
    response = client.get("/api/v1/jobs", HTTP_AUTHORIZATION="Bearer omlpy_unknown")
    assert response.status_code == 401
    assert "expired" not in response.json()["detail"]
    client.force_login(analyst)
    listing = client.get("/account/tokens/").content.decode()
    assert "expired" in re.search(r'data-prefix="[^"]+">(.*?)</tr>', listing, re.S).group(1)


def test_the_apitoken_command_takes_a_lifetime_and_a_read_only_scope(analyst, settings):
    settings.API_TOKEN_MAX_DAYS = 60
    out, err = StringIO(), StringIO()
    call_command("apitoken", "analyst", "--days", "5", "--read-only", stdout=out, stderr=err)
    token = ApiToken.objects.get()
    assert user_for_token(out.getvalue().strip()) == analyst
    assert token.scope == ApiToken.Scope.READ_ONLY
    assert timezone.now() + timedelta(days=4) < token.expires_at <= timezone.now() + timedelta(days=5)
    assert "read only" in err.getvalue()
    for days in ("0", "61"):
        with pytest.raises(CommandError, match="between 1 and 60 days"):
            call_command("apitoken", "analyst", "--days", days, stdout=StringIO())
    assert ApiToken.objects.count() == 1


def _api_operations() -> list[tuple[str, str]]:
    """(method, path template) of every operation of the JSON API, from its OpenAPI document."""
    from jobs.api.jobs import api

    schema = api.get_openapi_schema(path_prefix="/api/v1")
    return [(method.upper(), path) for path, item in schema["paths"].items() for method in item]


def test_a_read_only_token_reads_everything_and_is_refused_every_write(live, analyst):
    conn = Connection.objects.get()
    job = Job.objects.create(owner=analyst, connection=conn, kind=JobKind.DO_EVAL, script_name="return_df")
    # Arranged as running (set-up, not a move under test), so that cancel would have something to do.
    Job.objects.filter(pk=job.pk).update(state=JobState.SUBMITTING)
    _, read_only = token_create(user=analyst, name="ro", read_only=True)
    _, read_write = token_create(user=analyst, name="rw")
    operations = _api_operations()
    writes = [(m, p) for m, p in operations if m in ("POST", "PUT", "PATCH", "DELETE")]
    reads = [(m, p) for m, p in operations if m == "GET"]
    assert {p for _, p in writes} >= {"/api/v1/jobs", "/api/v1/jobs/{job_id}/cancel", "/api/v1/jobs/{job_id}/rerun"}
    assert {p for _, p in reads} >= {"/api/v1/jobs/{job_id}/result", "/api/v1/connections/{connection_id}/scripts"}
    job_result_store(job_id=job.pk, chunks=[b'{"result": 1}'], content_type="application/json")
    # A notification rule of the analyst's, for the rule paths to name.
    rule, _ = rule_create(user=analyst, data=RuleInput(events=["failed"], channel="inapp"))
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {read_only}"
    wrong = []
    for method, template in reads + writes:
        url = live.url(
            template.format(job_id=job.uuid, other_id=job.uuid, fmt="csv", connection_id=conn.pk, rule_id=rule.pk)
        )
        body = {"kind": "do_eval", "script": "return_df"} if method != "GET" else None
        response = session.request(method, url, json=body, timeout=30)
        if method == "GET" and response.status_code != 200:
            wrong.append(f"{method} {template}: {response.status_code} {response.text[:200]}")
        if method != "GET" and (response.status_code != 403 or "read-only" not in response.json()["detail"]):
            wrong.append(f"{method} {template}: {response.status_code} {response.text[:200]}")
    assert wrong == []
    assert Job.objects.count() == 1
    assert Job.objects.get().state == JobState.SUBMITTING
    assert NotificationRule.objects.get().pk == rule.pk
    assert Job.objects.get().cancel_requested_at is None
    # The same write with a read-write token goes through.
    created = requests.post(
        live.url("/api/v1/jobs"),
        json={"kind": "do_eval", "script": "return_df"},
        headers={"Authorization": f"Bearer {read_write}"},
        timeout=30,
    )
    assert created.status_code == 201, created.text


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_existing_tokens_the_default_lifetime_and_keeps_them_read_write(settings, make_user):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("accounts", "0004_oidc_identity")], [("accounts", "0005_api_token_expiry_scope")]
    settings.API_TOKEN_DEFAULT_DAYS = 90
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    user = make_user("old-timer")
    try:
        executor.migrate(before)
        old_token = executor.loader.project_state(before).apps.get_model("accounts", "ApiToken")
        old_token.objects.create(user_id=user.pk, name="legacy", prefix="omlpy_legacy", key_hash="0" * 64)
        started = timezone.now()
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        token = executor.loader.project_state(after).apps.get_model("accounts", "ApiToken").objects.get()
        assert token.scope == "read_write"
        assert started + timedelta(days=90) <= token.expires_at <= timezone.now() + timedelta(days=90)
    finally:
        MigrationExecutor(connection).migrate(leaves)
