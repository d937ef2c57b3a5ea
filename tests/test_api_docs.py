"""The API docs page, /api/v1/docs: Swagger UI from the site's own static files, under the site's Content
Security Policy, so that it works with no internet access and nothing on it is refused."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.urls import reverse
from playwright.sync_api import expect

from jobs.models import Job

DOCS = "/api/v1/docs"
# Runs before the page's own scripts: the browser reports each refusal of the policy as this event.
RECORD_POLICY_VIOLATIONS = """
window.__policyViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__policyViolations.push(
    event.violatedDirective + " refused " + (event.blockedURI || "inline") + " at " + event.sourceFile + ":" +
      event.lineNumber
  );
});
"""


class PageParts(HTMLParser):
    """The URLs a page loads or links to, its script elements with their text, and any inline style."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[tuple[dict, str]] = []
        self.inline_styles: list[str] = []
        self.data: dict[str, str] = {}
        self._script: dict | None = None
        self._script_text: list[str] = []

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        self.urls += [found[name] or "" for name in ("src", "href") if name in found]
        if tag == "style" or "style" in found:
            self.inline_styles.append(self.get_starttag_text() or tag)
        if tag == "script":
            self._script, self._script_text = found, []
        if found.get("id") == "swagger-ui":
            self.data = {name: value or "" for name, value in found.items() if name.startswith("data-")}

    def handle_data(self, data):
        if self._script is not None:
            self._script_text.append(data)

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.scripts.append((self._script, "".join(self._script_text)))
            self._script = None


def parts_of(html: str) -> PageParts:
    parts = PageParts()
    parts.feed(html)
    parts.close()
    return parts


@pytest.fixture
def docs_page(client, analyst):
    client.force_login(analyst)
    response = client.get(DOCS)
    assert response.status_code == 200
    return response


def test_the_docs_page_loads_only_files_of_this_site_and_has_no_inline_script_or_style(docs_page):
    parts = parts_of(docs_page.content.decode())

    assert parts.urls, "the page references no file at all"
    for url in parts.urls:
        where = urlsplit(url)
        assert not where.scheme, f"{url} names a scheme: the page must load nothing from another host"
        assert not where.netloc, f"{url} names a host: the page must load nothing from another host"
    assert parts.scripts, "the page loads no script"
    for attrs, text in parts.scripts:
        assert attrs.get("src"), f"inline script: {attrs}"
        assert not text.strip(), f"script element with content: {text[:200]}"
    assert parts.inline_styles == []


def test_the_docs_page_loads_the_vendored_swagger_ui_and_every_file_it_names_is_served(client, docs_page):
    parts = parts_of(docs_page.content.decode())
    scripts = [attrs["src"] for attrs, _ in parts.scripts]

    assert any("/vendor/swagger-ui/swagger-ui-bundle." in src for src in scripts)
    assert any("/js/api-docs." in src for src in scripts)
    assert any("/vendor/swagger-ui/swagger-ui." in url and url.endswith(".css") for url in parts.urls)
    for url in parts.urls:
        if url.startswith(settings.STATIC_URL):
            assert client.get(url).status_code == 200, f"{url} is not served"


def test_the_docs_page_gives_its_script_the_openapi_address_and_a_csrf_token(docs_page):
    parts = parts_of(docs_page.content.decode())

    assert parts.data["data-openapi-url"] == reverse("api:openapi-json")
    assert parts.data["data-csrf-token"]


def test_the_docs_page_is_sent_with_the_sites_own_content_security_policy(docs_page):
    assert docs_page["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in docs_page["Content-Security-Policy"]


# --- In Chromium, against the running system ----------------------------------------------------


class Watch:
    """What a page did while the test ran: console errors, uncaught errors, refusals and requests."""

    def __init__(self, page) -> None:
        self.page = page
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("request", lambda request: self.requests.append(request.url))
        page.add_init_script(RECORD_POLICY_VIOLATIONS)

    def _console(self, message) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def policy_violations(self) -> list[str]:
        return self.page.evaluate("window.__policyViolations || []")

    def assert_clean(self, origin: str) -> None:
        assert self.policy_violations() == []
        elsewhere = [url for url in self.requests if not same_origin(url, origin)]
        assert elsewhere == [], f"requests that left {origin}"
        assert self.page_errors == []
        assert self.console_errors == []


def same_origin(url: str, origin: str) -> bool:
    if url.startswith("data:"):
        return True  # an inline image decoded in the page, not a request to any host
    here, there = urlsplit(url), urlsplit(origin)
    return (here.scheme, here.netloc) == (there.scheme, there.netloc)


def operation(page, method: str, path: str):
    return page.locator(f'.opblock-{method} .opblock-summary-path[data-path="{path}"]')


@pytest.mark.browser
def test_swagger_ui_renders_the_operations_with_no_error_no_refusal_and_no_request_elsewhere(
    live, page, login, analyst
):
    login(page, "analyst")
    watch = Watch(page)

    answer = page.goto(live.url(DOCS))
    assert answer is not None
    assert answer.headers["content-security-policy"] == settings.CONTENT_SECURITY_POLICY
    expect(operation(page, "get", "/api/v1/jobs")).to_be_visible()
    expect(operation(page, "post", "/api/v1/jobs")).to_be_visible()
    expect(operation(page, "get", "/api/v1/connections")).to_be_visible()
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("OMLPy Dashboard API")
    page.wait_for_load_state("networkidle")

    assert live.url("/api/v1/openapi.json") in watch.requests
    assert any("/vendor/swagger-ui/swagger-ui-bundle." in url for url in watch.requests)
    watch.assert_clean(live.base_url)


@pytest.mark.browser
def test_try_it_out_submits_a_job_with_the_signed_in_session(live, page, login, analyst):
    login(page, "analyst")
    watch = Watch(page)
    page.goto(live.url(DOCS))

    operation(page, "post", "/api/v1/jobs").click()
    block = page.locator(".opblock-post").filter(has=page.locator('.opblock-summary-path[data-path="/api/v1/jobs"]'))
    block.get_by_role("button", name="Try it out").click()
    block.locator("textarea.body-param__text").fill(json.dumps({"kind": "do_eval", "script": "return_df"}))
    block.get_by_role("button", name="Execute").click()

    # Swagger UI shows the live answer in its own table, apart from the documented ones.
    expect(block.locator(".live-responses-table tbody .response-col_status")).to_have_text("201")
    job = Job.objects.get(owner=analyst)
    assert job.script_name == "return_df"
    page.wait_for_load_state("networkidle")
    watch.assert_clean(live.base_url)
