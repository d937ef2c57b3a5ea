"""Bad input to the JSON API over real HTTP: every refusal is a 4xx naming the field, nothing is stored, and the
limits are those of the compose form (jobs.services.specs), whatever shape the value comes in."""

from __future__ import annotations

import json

import pytest
import requests
from django.conf import settings

from accounts.tokens import token_create
from jobs.models import Job
from jobs.services.specs import MAX_PARAMETERS_CHARS, MAX_PARAMETERS_DEPTH

DEEP = 5000


@pytest.fixture
def api(live, analyst):
    _, secret = token_create(user=analyst, name="limits")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {secret}"

    def call(method: str, path: str, **kwargs) -> requests.Response:
        return session.request(method, live.url(f"/api/v1{path}"), timeout=60, **kwargs)

    return call


def post_raw(api, text: str) -> requests.Response:
    """POST a body written by hand, so that it can hold what json.dumps would not write (lone surrogates)."""
    return api("POST", "/jobs", data=text.encode(), headers={"Content-Type": "application/json"})


def refused(answer: requests.Response, status: int = 400) -> dict:
    assert answer.status_code == status, answer.text[:500]
    body = answer.json()
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


def nested(depth: int) -> str:
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def test_parameters_nested_5000_levels_deep_as_an_object_are_refused_naming_parameters(api):
    body = '{"kind": "do_eval", "script": "return_df", "parameters": ' + nested(DEEP) + "}"
    errors = refused(post_raw(api, body))["errors"]
    assert errors == {"parameters": [f"Nested more than {MAX_PARAMETERS_DEPTH} levels deep."]}
    assert not Job.objects.exists()


def test_parameters_nested_5000_levels_deep_as_json_text_are_refused_naming_parameters(api):
    answer = api("POST", "/jobs", json={"kind": "do_eval", "script": "return_df", "parameters": nested(DEEP)})
    errors = refused(answer)["errors"]
    assert errors["parameters"] == ['Must be a JSON object, e.g. {"n": 10}.']
    assert not Job.objects.exists()


def test_any_field_nested_too_deep_is_refused_by_its_name(api):
    body = '{"kind": "do_eval", "script": "return_df", "envName": ' + "[" * DEEP + "]" * DEEP + "}"
    errors = refused(post_raw(api, body))["errors"]
    assert errors == {"envName": [f"Nested more than {MAX_PARAMETERS_DEPTH} levels deep."]}
    assert not Job.objects.exists()


def test_parameters_at_the_depth_limit_are_accepted_and_one_level_more_is_not(api):
    def deep_object(levels: int) -> dict:
        value: dict = {}
        for _ in range(levels - 1):
            value = {"a": value}
        return value

    limit = MAX_PARAMETERS_DEPTH
    at_limit = api("POST", "/jobs", json={"kind": "do_eval", "script": "return_df", "parameters": deep_object(limit)})
    assert at_limit.status_code == 201, at_limit.text
    over = api("POST", "/jobs", json={"kind": "do_eval", "script": "return_df", "parameters": deep_object(limit + 1)})
    assert refused(over)["errors"] == {"parameters": [f"Nested more than {limit} levels deep."]}
    assert Job.objects.count() == 1


def test_a_10_mb_body_answers_413_naming_the_limit_and_stores_nothing(api):
    padding = "x" * (10 * 1024 * 1024)
    answer = post_raw(api, json.dumps({"kind": "do_eval", "script": "return_df", "envName": padding}))
    body = refused(answer, status=413)
    assert f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes" in body["detail"]
    assert not Job.objects.exists()


def test_parameters_as_a_2_mb_object_are_refused_with_the_forms_message(api):
    answer = api("POST", "/jobs", json={"kind": "do_eval", "script": "return_df", "parameters": {"a": "b" * 2**21}})
    assert refused(answer)["errors"] == {"parameters": [f"At most {MAX_PARAMETERS_CHARS} characters."]}
    assert not Job.objects.exists()


def test_unknown_fields_are_refused_with_their_names(api):
    answer = api("POST", "/jobs", json={"kind": "do_eval", "script": "return_df", "bogus": 1, "asyncflag": False})
    assert refused(answer)["errors"] == {"asyncflag": ["Unknown field."], "bogus": ["Unknown field."]}
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"kind": "do_eval", "script": "return_df", "envName": "\\ud800"}', "envName"),
        ('{"kind": "do_eval", "script": "return_df", "parameters": {"a": "\\udfff"}}', "parameters"),
        ('{"kind": "do_eval", "script": "return_df", "parameters": {"\\ud800": 1}}', "parameters"),
        ('{"kind": "table_apply", "script": "return_df", "input": "select \'\\ud83d\' from IRIS"}', "input"),
    ],
)
def test_a_lone_surrogate_is_refused_naming_the_field(api, body, field):
    errors = refused(post_raw(api, body))["errors"]
    assert errors == {field: ["Must be valid Unicode text (a lone surrogate is not)."]}
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"kind": "do_eval", "script": "return_df", "envName": "py\x00"}, "envName"),
        ({"kind": "do_eval", "script": "return_df", "parameters": {"a": ["ok", "b\x00"]}}, "parameters"),
        ({"kind": "do_eval", "script": "return_df", "parameters": {"k\x00": 1}}, "parameters"),
        ({"kind": "do_eval", "script": "return_df", "connection": "Embedded\x00engine"}, "connection"),
    ],
)
def test_a_nul_character_is_refused_naming_the_field_before_the_database_sees_it(api, payload, field):
    errors = refused(api("POST", "/jobs", json=payload))["errors"]
    assert errors == {field: ["Must not contain NUL characters."]}
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({"kind": "row_apply", "script": "s", "input": "select 1", "rows": "5"}, "rows", "Must be a whole number"),
        ({"kind": "do_eval", "script": "s", "asyncFlag": "no"}, "asyncFlag", "Must be true or false."),
        ({"kind": "do_eval", "script": 7}, "script", "Must be text."),
        ({"kind": "do_eval", "script": "s", "parameters": [1]}, "parameters", "Must be a JSON object"),
    ],
)
def test_values_of_the_wrong_json_type_are_refused_naming_the_field(api, payload, field, message):
    errors = refused(api("POST", "/jobs", json=payload))["errors"]
    assert list(errors) == [field]
    assert errors[field][0].startswith(message)
    assert not Job.objects.exists()


def test_a_connection_that_does_not_exist_answers_404_naming_the_field(api):
    body = refused(api("POST", "/jobs", json={"kind": "do_eval", "script": "s", "connection": 999}), status=404)
    assert body["errors"] == {"connection": ["Unknown connection 999."]}
    assert not Job.objects.exists()


def test_the_job_list_refuses_a_created_to_that_is_not_a_date_time_naming_it(api):
    errors = refused(api("GET", "/jobs", params={"created_to": "9999-12-31"}))["errors"]
    assert list(errors) == ["created_to"]


def test_the_job_list_reads_instants_at_the_calendars_edges_as_the_edges(api):
    made = api("POST", "/jobs", json={"kind": "do_eval", "script": "return_df"}).json()
    params = {"created_from": "0001-01-01T00:00:00+14:00", "created_to": "9999-12-31T23:59:59-12:00"}
    answer = api("GET", "/jobs", params=params)
    assert answer.status_code == 200, answer.text
    assert [item["id"] for item in answer.json()["items"]] == [made["id"]]


# The second is a well-formed cursor of an earlier format whose id is beyond what the database stores.
@pytest.mark.parametrize("cursor", ["garbage!", "MjAyNi0wMS0wMVQwMDowMDowMCswMDowMHw5OTk5OTk5OTk5OTk5OTk5OTk5OQ"])
def test_the_job_list_refuses_a_cursor_it_did_not_make(api, cursor):
    errors = refused(api("GET", "/jobs", params={"cursor": cursor}))["errors"]
    assert list(errors) == ["cursor"]


@pytest.mark.parametrize("state", ["bogus", "queued\x00"])
def test_the_job_list_refuses_an_unknown_state_naming_it(api, state):
    errors = refused(api("GET", "/jobs", params={"state": state}))["errors"]
    assert list(errors) == ["state"]
