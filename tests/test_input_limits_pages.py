"""Bad input to the pages: the compose form and its preview refuse what the API refuses, with the same messages
(one validator, jobs.services.specs); result pages and filters answer 400 naming the parameter; nothing is stored."""

from __future__ import annotations

import json

import pytest
import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from playwright.sync_api import expect

from jobs.models import Job
from jobs.services.specs import MAX_PARAMETERS_CHARS, MAX_PARAMETERS_DEPTH, parse_job_request
from jobs.states import JobKind
from tests.results_support import succeeded_job_with_result

DEEP = 5000
DO_EVAL = {"kind": "do_eval", "script": "return_df", "asyncFlag": ["false", "true"]}


def nested(depth: int) -> str:
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def form_errors(response) -> str:
    assert response.status_code == 400, response.status_code
    return response.content.decode()


def api_message(data: dict) -> list[str]:
    """What the shared validator says about `parameters` when the API sends `data` (JSON types)."""
    try:
        parse_job_request(data)
    except ValidationError as exc:
        return exc.message_dict["parameters"]
    raise AssertionError("the request was accepted")


# --- The compose form and its preview ------------------------------------------------------------


# The form refuses (400); the preview, a live fragment of the compose page, lists the same problem (200).
@pytest.mark.parametrize(("path", "status"), [("/jobs/new/", 400), ("/jobs/new/preview/", 200)])
def test_parameters_nested_5000_levels_deep_are_refused_by_the_form_and_the_preview(signed_in, conn, path, status):
    response = signed_in.post(path, DO_EVAL | {"parameters": nested(DEEP)})
    assert response.status_code == status
    assert f"Nested more than {MAX_PARAMETERS_DEPTH} levels deep." in response.content.decode()
    assert Job.objects.count() == 0


def test_the_form_and_the_api_refuse_oversized_parameters_with_one_message(signed_in, conn):
    text = json.dumps({"a": "b" * 2**21})
    page = form_errors(signed_in.post("/jobs/new/", DO_EVAL | {"parameters": text}))
    expected = f"At most {MAX_PARAMETERS_CHARS} characters."
    assert expected in page
    assert api_message({"kind": "do_eval", "script": "return_df", "parameters": json.loads(text)}) == [expected]
    assert Job.objects.count() == 0


def test_the_form_and_the_api_refuse_parameters_nested_too_deep_with_one_message(signed_in, conn):
    text = nested(MAX_PARAMETERS_DEPTH + 1)
    page = form_errors(signed_in.post("/jobs/new/", DO_EVAL | {"parameters": text}))
    expected = f"Nested more than {MAX_PARAMETERS_DEPTH} levels deep."
    assert expected in page
    assert api_message({"kind": "do_eval", "script": "return_df", "parameters": json.loads(text)}) == [expected]


def test_a_posted_field_the_form_does_not_have_is_refused_by_name(signed_in, conn):
    page = form_errors(signed_in.post("/jobs/new/", DO_EVAL | {"bogus": "1"}))
    assert "bogus" in page
    assert "Unknown field." in page
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"parameters": '{"a": "\\ud800"}'}, "Must be valid Unicode text (a lone surrogate is not)."),
        ({"parameters": '{"a": "\\u0000"}'}, "Must not contain NUL characters."),
        ({"envName": "py\x00"}, "Must not contain NUL characters."),
        ({"script": "return\x00df"}, "Must not contain NUL characters."),
    ],
)
def test_a_lone_surrogate_or_a_nul_is_refused_by_the_form(signed_in, conn, fields, message):
    page = form_errors(signed_in.post("/jobs/new/", DO_EVAL | fields))
    assert message in page
    assert Job.objects.count() == 0


def test_a_valid_form_still_queues_the_job_with_its_parameters(signed_in, conn):
    response = signed_in.post("/jobs/new/", DO_EVAL | {"parameters": '{"n": [1, {"m": "é"}]}', "timeout": " 1800 "})
    assert response.status_code == 302
    job = Job.objects.get()
    assert job.parameters == {"n": [1, {"m": "é"}]}
    assert job.timeout == 1800


# --- Result pages -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"k1": 1, "k2": [1, 2]}, JobKind.DO_EVAL),
        ({"g_1": {"COUNT": {"0": 5}}, "g_2": {"COUNT": {"0": 7}}}, JobKind.GROUP_APPLY),
        ([{"A": 1}, {"A": 2}], JobKind.TABLE_APPLY),
    ],
)
def test_a_huge_page_number_on_a_result_page_answers_400_naming_page(signed_in, analyst, body, kind):
    job = succeeded_job_with_result(analyst, body, kind=kind)
    for path in (f"/jobs/{job.uuid}/result/", f"/jobs/{job.uuid}/result/raw/"):
        response = signed_in.get(path, {"page": "99999999999999999999999"})
        assert response.status_code == 400, path
        assert "page" in response.content.decode()
        assert signed_in.get(path, {"page": "2"}).status_code == 200


# --- Date filters -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/jobs/", "/analytics/", "/analytics/trend.json", "/analytics/gantt.json"])
@pytest.mark.parametrize("field", ["created_to", "created_from"])
def test_a_date_at_the_end_of_the_calendar_answers_400_naming_the_filter(signed_in, conn, path, field):
    response = signed_in.get(path, {field: "9999-12-31"})
    assert response.status_code == 400
    assert field in response.content.decode()


def test_a_date_filter_inside_the_calendar_still_filters(signed_in, conn, analyst):
    Job.objects.create(owner=analyst, connection=conn, kind=JobKind.DO_EVAL, script_name="return_df")
    page = signed_in.get("/jobs/", {"created_from": "2000-01-01", "created_to": "9999-12-30"})
    assert page.status_code == 200
    assert "return_df" in page.content.decode()


# --- An oversized form, over real HTTP ------------------------------------------------------------


def test_a_10_mb_form_post_answers_413_naming_the_limit_and_stores_nothing(live, analyst):
    browser = requests.Session()
    login = browser.get(live.url("/accounts/login/"), timeout=30)
    assert login.status_code == 200
    signed = browser.post(
        live.url("/accounts/login/"),
        data={"username": "analyst", "password": "analyst", "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
        headers={"Referer": live.url("/accounts/login/")},
        timeout=30,
    )
    assert signed.status_code == 200
    assert "/accounts/login/" not in signed.url
    answer = browser.post(
        live.url("/jobs/new/"),
        data={"csrfmiddlewaretoken": browser.cookies["csrftoken"], "kind": "do_eval", "envName": "x" * 10 * 2**20},
        headers={"Referer": live.url("/jobs/new/")},
        timeout=60,
    )
    assert answer.status_code == 413
    assert f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes" in answer.text
    assert not Job.objects.exists()


@pytest.mark.browser
def test_the_preview_names_what_is_wrong_while_the_request_is_not_valid(live, page, login, analyst):
    login(page, "analyst")
    page.goto(live.url("/jobs/new/"))
    page.wait_for_selector("select#id_script option[value=return_df]", state="attached")
    page.select_option("#id_script", "return_df")
    page.fill("#id_parameters", nested(MAX_PARAMETERS_DEPTH + 1))
    # The preview lists its problems while the request is not valid, and is no failed live update.
    expect(page.locator("#preview .preview-errors")).to_contain_text(
        f"parameters: Nested more than {MAX_PARAMETERS_DEPTH} levels deep."
    )
    expect(page.locator("#live-problem")).to_be_hidden()
    page.fill("#id_parameters", '{"n": 1}')
    expect(page.locator("#preview-body")).to_contain_text('"parameters": "{\\"n\\":1}"')
