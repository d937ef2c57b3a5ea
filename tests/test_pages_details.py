"""Details an analyst or an administrator notices at once: the site icon, the Base URL example of the admin, a
compose picker without the benchmark's script, one wording for one JSON typo."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from jobs.models import Connection
from jobs.services.specs import OBJECT_MESSAGE, parse_job_request


def test_favicon_ico_answers_with_the_icon_file(client):
    answer = client.get("/favicon.ico")
    assert answer.status_code == 302
    assert answer["Location"].startswith("/static/favicon")
    assert answer["Location"].endswith(".ico")
    icon = client.get(answer["Location"])
    assert icon.status_code == 200
    body = b"".join(icon.streaming_content) if icon.streaming else icon.content
    assert body[:4] == b"\x00\x00\x01\x00"  # an ICO file's header
    assert int.from_bytes(body[4:6], "little") == 3  # 16, 32 and 48 pixels


def test_pages_name_the_icon(client, analyst):
    client.force_login(analyst)
    assert '<link rel="icon" href="/static/favicon' in client.get("/jobs/").content.decode()


def test_the_admin_shows_a_plausible_base_url_example(client, db):
    admin = get_user_model().objects.create_user("root", password="root", is_staff=True, is_superuser=True)
    client.force_login(admin)
    page = client.get("/admin/jobs/connection/add/").content.decode()
    assert "https://&lt;tenancy&gt;-&lt;database&gt;.adb.&lt;region&gt;.oraclecloudapps.com" in page
    assert "https://-.adb..oraclecloudapps.com" not in page


def test_the_compose_picker_does_not_offer_the_benchmark_timer_script(live, client, analyst):
    client.force_login(analyst)
    connection = Connection.objects.get(is_default=True)
    picker = client.get("/jobs/new/scripts/", {"connection": connection.pk}).content.decode()
    assert 'value="group_count"' in picker
    assert 'value="timer"' not in picker
    # A form that already names it (a clone of a timer job) keeps it; the API still lists and runs it.
    kept = client.get("/jobs/new/scripts/", {"connection": connection.pk, "script": "timer"}).content.decode()
    assert 'value="timer"' in kept
    listed = client.get(f"/api/v1/connections/{connection.pk}/scripts").json()
    assert "timer" in {script["name"] for script in listed}


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ('{"a": 1,}', "Invalid JSON at line 1, column 9: expected a property name in double quotes."),
        ("{'a': 1}", "Invalid JSON at line 1, column 2: expected a property name in double quotes."),
        (
            '{\n  "oml_input_type": pandas\n}',
            'Invalid JSON at line 2, column 21: expected a value (a string needs double quotes), found "p".',
        ),
        ('{"a" 1}', "Invalid JSON at line 1, column 6: expected ':' after the property name."),
        ('{"a": NaN}', 'Invalid JSON at line 1, column 7: expected a value (a string needs double quotes), found "N".'),
        ('{"a": [1 2]}', "Invalid JSON at line 1, column 10: expected ',' or ']' after an array item."),
        ('{"a": 1} x', "Invalid JSON at line 1, column 10: unexpected text after the JSON value."),
        ('{"a": "\\q"}', "Invalid JSON at line 1, column 9: invalid escape \\q."),
        ('{"a": "x', "Invalid JSON at line 1, column 9: unexpected end of input."),
    ],
)
def test_a_json_typo_reads_as_the_form_check_words_it(db, typed, message):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        parse_job_request({"kind": "do_eval", "script": "s", "parameters": typed}, form=True)
    assert refused.value.message_dict["parameters"] == [message]


def test_json_that_is_not_an_object_reads_as_the_form_check_words_it(db):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        parse_job_request({"kind": "do_eval", "script": "s", "parameters": "[1]"}, form=True)
    assert refused.value.message_dict["parameters"] == [OBJECT_MESSAGE]
