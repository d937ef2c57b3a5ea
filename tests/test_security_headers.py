"""Production hardening: deploy checks, a content security policy, framing refused, CSRF on every form."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from accounts.models import Membership, Team

ROOT = Path(__file__).resolve().parent.parent
POLICY_PARTS = [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "object-src 'none'",
    "frame-ancestors 'none'",
    "form-action 'self'",
]


def test_check_deploy_passes_with_production_settings():
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SECURE_", "DEBUG", "BEHIND_TLS_PROXY", "DJANGO_ALLOW_ASYNC_UNSAFE"))
    }
    env.update(
        DEBUG="false",
        SECRET_KEY="a-long-random-production-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        ENCRYPTION_KEYS="9SZTblygt3xArpISV3_IM3qAVszu5ZAdbgCv08a3tEw=",
        ALLOWED_HOSTS="example.com",
        OMLENGINE_ENABLED="false",
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


@pytest.fixture
def signed_in(client, make_user):
    user = make_user("pat")
    user.is_staff = user.is_superuser = True
    user.save()
    Membership.objects.create(user=user, team=Team.objects.create(name="T"), role="analyst")
    client.force_login(user)
    return client


PAGES = ["/", "/jobs/", "/jobs/new/", "/account/", "/account/tokens/", "/audit/", "/accounts/login/"]


@pytest.mark.parametrize("path", PAGES)
def test_pages_carry_the_content_security_policy_and_refuse_framing(signed_in, path):
    response = signed_in.get(path)
    assert response.status_code in (200, 302)
    policy = response["Content-Security-Policy"]
    for part in POLICY_PARTS:
        assert part in policy
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", PAGES)
def test_pages_have_no_inline_scripts_styles_or_event_handlers_and_csrf_on_every_post_form(signed_in, path):
    response = signed_in.get(path, follow=True)
    html = response.content.decode()
    for script in re.findall(r"<script\b[^>]*>", html, flags=re.IGNORECASE):
        assert "src=" in script, f"inline script on {path}: {script}"
    assert not re.search(r"<style\b", html, flags=re.IGNORECASE), f"inline <style> on {path}"
    assert not re.search(r"\sstyle\s*=", html, flags=re.IGNORECASE), f"style attribute on {path}"
    assert not re.search(r"\son[a-z]+\s*=", html, flags=re.IGNORECASE), f"event handler attribute on {path}"
    for form in re.findall(r"<form\b[^>]*>.*?</form>", html, flags=re.IGNORECASE | re.DOTALL):
        if re.search(r'method\s*=\s*"post"', form, flags=re.IGNORECASE):
            assert "csrfmiddlewaretoken" in form, f"a POST form without a CSRF token on {path}"


def test_a_post_without_the_csrf_token_is_refused(make_user):
    from django.test import Client

    make_user("eve")
    strict = Client(enforce_csrf_checks=True)
    strict.login(username="eve", password="eve")
    assert strict.post("/account/tokens/", {"name": "x"}).status_code == 403
