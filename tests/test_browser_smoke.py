"""The browser fixtures themselves: Chromium signs in through the real login form."""

import pytest

pytestmark = pytest.mark.browser


def test_an_analyst_signs_in_through_the_login_form_and_sees_the_home_page(live, page, login, make_user):
    make_user("analyst")
    login(page, "analyst")
    assert "analyst" in page.inner_text("header")
