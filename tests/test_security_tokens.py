"""Personal API tokens: shown once, stored hashed, listed by prefix, revocable, accepted by the API as Bearer."""

from __future__ import annotations

import hashlib
import re
from io import StringIO

from django.core.management import call_command

from accounts.models import ApiToken
from accounts.tokens import user_for_token
from jobs.models import AuditEntry


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
