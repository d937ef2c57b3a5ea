"""Bad bodies to the embedded engine over real HTTP: OML's 400 (or 413) error answer, never a 500, and no job
or call stored."""

from __future__ import annotations

import json

import pytest
import requests
from django.conf import settings

from omlengine.jsonbody import MAX_DEPTH
from omlengine.models import EngineCall, EngineJob
from tests.test_engine_protocol import EngineClient

DEEP = 5000


@pytest.fixture
def engine(live) -> EngineClient:
    return EngineClient(live.base_url).sign_in()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def refused(answer: requests.Response, status: int = 400) -> str:
    assert answer.status_code == status, answer.text[:500]
    body = answer.json()
    assert set(body) == {"errorCode", "errorMessage"}
    return body["errorMessage"]


def nothing_stored() -> bool:
    return not EngineJob.objects.exists() and not EngineCall.objects.exists()


def test_a_token_request_nested_5000_levels_deep_answers_400(engine):
    answer = requests.post(
        engine.base_url + "/omlusers/api/oauth2/v1/token",
        data='{"grant_type": ' + nested(DEEP) + "}",
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert f"nested more than {MAX_DEPTH} levels deep" in refused(answer)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_an_execution_body_nested_5000_levels_deep_answers_400_and_runs_nothing(engine, version):
    answer = engine.call("do-eval", "return_df", '{"parameters": ' + nested(DEEP) + "}", version=version)
    assert f"nested more than {MAX_DEPTH} levels deep" in refused(answer)
    assert nothing_stored()


def test_parameters_text_nested_5000_levels_deep_answers_400_naming_parameters(engine):
    body = {"asyncFlag": True, "parameters": '{"a": ' + nested(DEEP) + "}"}
    message = refused(engine.call("do-eval", "return_df", body))
    assert message.startswith('"parameters"')
    assert f"nested more than {MAX_DEPTH} levels deep" in message
    assert nothing_stored()


@pytest.mark.parametrize(
    "body",
    [
        '{"asyncFlag": true, "parameters": "{\\"a\\": \\"\\\\u0000\\"}"}',
        '{"asyncFlag": true, "parameters": "{\\"a\\": \\"\\\\ud800\\"}"}',
        '{"asyncFlag": true, "envName": "\\ud800"}',
        '{"asyncFlag": true, "input": "select 1\\u0000"}',
    ],
)
def test_a_nul_or_a_lone_surrogate_anywhere_in_a_body_answers_400(engine, body):
    assert json.loads(body)  # the body is valid JSON: only what it holds is refused
    message = refused(engine.call("do-eval", "return_df", body))
    assert "NUL" in message or "surrogate" in message
    assert nothing_stored()


@pytest.mark.parametrize("path", ["/omlusers/api/oauth2/v1/token", "/oml/api/py-scripts/v2/do-eval/return_df"])
def test_a_10_mb_body_answers_413_naming_the_limit(engine, path):
    answer = requests.post(
        engine.base_url + path,
        data=json.dumps({"pad": "x" * 10 * 2**20}),
        headers=engine.headers(),
        timeout=60,
    )
    assert f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes" in refused(answer, status=413)
    assert nothing_stored()
