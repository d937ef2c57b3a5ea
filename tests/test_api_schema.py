"""The JSON API against its own OpenAPI document, with generated requests (valid and invalid) over real HTTP.

Every operation is called with a bounded number of generated examples, a fixed seed and an analyst's Bearer
token, against the running system. Every answer passes schemathesis's default checks (no server error, a
documented status, content type, headers and body; schema-valid requests accepted and schema-invalid ones
refused; authentication not ignored; unsupported methods answered 405), and every refused request (4xx) says
why in JSON (`{"detail": "..."}`), as the API promises. The document is the one the application builds, which
is also the one the server publishes at /api/v1/openapi.json (checked below).
"""

from __future__ import annotations

import json
import os
import uuid

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

# Bounded and repeatable by default; set API_SCHEMA_EXAMPLES / API_SCHEMA_SEED for a deeper or another search.
MAX_EXAMPLES = int(os.environ.get("API_SCHEMA_EXAMPLES", "30"))
SEED = int(os.environ.get("API_SCHEMA_SEED", "20261127"))

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "mode": "all", "deterministic": True, "database": "none"},
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    }
)


@pytest.fixture
def api_token(live, make_user):
    from accounts.models import Membership
    from accounts.tokens import token_create
    from tests.conftest import analysts_team

    user = make_user("schema-analyst")
    # The team the stack's connection is granted to.
    Membership.objects.create(user=user, team=analysts_team(), role=Membership.Role.ANALYST)
    _, raw = token_create(user=user, name="schema")
    return raw


def _document() -> dict:
    from jobs.api.jobs import api

    return json.loads(json.dumps(api.get_openapi_schema()))


schema = schemathesis.openapi.from_dict(_document(), config=CONFIG)


def test_server_publishes_the_document_the_requests_are_generated_from(live):
    published = requests.get(live.url("/api/v1/openapi.json"), timeout=30)
    assert published.status_code == 200
    assert published.json() == _document()


def refusals_say_why(ctx, response, case) -> None:
    """A 4xx answer is JSON with a non-empty `detail` message."""
    if not 400 <= response.status_code < 500:
        return
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"{response.status_code} without a JSON body: {response.text[:200]!r}") from None
    detail = body.get("detail") if isinstance(body, dict) else None
    if not (isinstance(detail, str) and detail.strip()):
        raise AssertionError(f"{response.status_code} without a message: {body!r}")


@schema.parametrize()
# The stack and the token are meant to be shared by every generated request of an operation; HTTP is not fast.
@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_answers_generated_requests_as_its_document_says_and_explains_refusals(case, api_token, live):
    if case.headers and "Idempotency-Key" in case.headers:
        # A key names one logical request: generated examples would otherwise reuse a key for different bodies,
        # which is refused by design (422; tests/test_api_client_operations.py covers it). Each example gets its own.
        case.headers["Idempotency-Key"] = f"{case.headers['Idempotency-Key'][:200]}-{uuid.uuid4().hex}"
    # No `checks=`: that would replace the default checks instead of adding to them.
    case.call_and_validate(
        base_url=live.base_url,
        headers={"Authorization": f"Bearer {api_token}"},
        additional_checks=[refusals_say_why],
        timeout=30,
    )
