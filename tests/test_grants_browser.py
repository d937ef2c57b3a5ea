"""In the browser: the compose page offers only the connections granted to the user's teams and tells a user in
no team why they cannot submit; the tokens page creates a token with a chosen lifetime and scope and lists both."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from accounts.models import ApiToken
from jobs.services.jobs import connection_save

pytestmark = pytest.mark.browser


def test_compose_offers_only_granted_connections_and_explains_why_a_user_in_no_team_cannot_submit(
    live, page, login, analyst, make_user
):
    connection_save(
        name="Elsewhere only", base_url="http://127.0.0.1:9/elsewhere-path", username="ELSEWHERE", password="pw"
    )
    login(page, "analyst")
    page.goto(live.url("/jobs/new/"))
    options = page.locator("#id_connection option")
    expect(options).to_have_count(1)
    expect(options.first).to_contain_text("Embedded engine")
    # The granted default is preselected, and its scripts are listed from the engine.
    expect(page.locator("#id_connection")).to_have_value(str(options.first.get_attribute("value")))
    page.wait_for_selector("select#id_script option[value=group_count]", state="attached")
    assert "elsewhere" not in page.content().lower()

    make_user("loner")
    page.context.clear_cookies()
    login(page, "loner")
    page.goto(live.url("/jobs/new/"))
    expect(page.locator("#submit-refusal")).to_contain_text("not a member of any team")
    expect(page.locator("#compose-form")).to_have_count(0)


def test_a_token_made_on_the_tokens_page_has_the_chosen_lifetime_and_scope(live, page, login, analyst):
    login(page, "analyst")
    page.goto(live.url("/account/tokens/"))
    page.fill("#id_name", "nightly report")
    page.fill("#id_days", "7")
    page.check("input[name=scope][value=read_only]")
    page.click("button[type=submit].primary")
    expect(page.locator("#new-token")).to_be_visible()
    token = ApiToken.objects.get(user=analyst)
    row = page.locator(f'tr[data-prefix="{token.prefix}"]')
    expect(row.locator(".token-scope")).to_have_text("Read only")
    expect(row.locator(".token-expires")).to_contain_text(token.expires_at.strftime("%Y-%m-%d"))
    expect(row.locator(".token-status")).to_have_text("active")
