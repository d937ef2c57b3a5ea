"""The client's address behind trusted proxies: forwarded headers are believed from TRUSTED_PROXIES only, and
the login throttle and the audit trail key on the address the proxy saw."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import Client, RequestFactory, override_settings

from accounts import throttling
from audit.models import AuditEntry
from omlpy_dashboard.client_address import ForwardedHeadersMiddleware, client_address, parse_networks

ROOT = Path(__file__).resolve().parent.parent
PROXY = "10.0.0.2"
PROXIES = ["10.0.0.0/24", "fd00::/8"]
CLIENT = "198.51.100.7"
OTHER_CLIENT = "198.51.100.8"
STRANGER = "192.0.2.50"

behind_proxies = override_settings(TRUSTED_PROXIES=PROXIES)


def _address(remote_addr: str, forwarded_for: str | None = None) -> str | None:
    headers = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for is not None else {}
    return client_address(RequestFactory().get("/", REMOTE_ADDR=remote_addr, **headers))


# --- The helper ---------------------------------------------------------------------------------


def test_without_trusted_proxies_the_forwarded_header_is_ignored():
    assert _address(PROXY, CLIENT) == PROXY


@behind_proxies
def test_behind_one_trusted_proxy_the_client_is_the_address_it_forwarded():
    assert _address(PROXY, CLIENT) == CLIENT


@behind_proxies
def test_behind_a_chain_of_trusted_proxies_the_client_is_the_first_untrusted_address_from_the_right():
    assert _address(PROXY, f"{CLIENT}, 10.0.0.9, 10.0.0.4") == CLIENT


@behind_proxies
def test_entries_a_client_forged_to_the_left_of_its_own_address_are_not_believed():
    assert _address(PROXY, f"1.1.1.1, 10.0.0.9, {CLIENT}") == CLIENT
    assert _address(PROXY, f"10.0.0.7, {CLIENT}") == CLIENT


@behind_proxies
def test_malformed_entries_are_passed_over():
    assert _address(PROXY, f"{CLIENT}, unknown, , 999.1.1.1, 10.0.0.9") == CLIENT
    assert _address(PROXY, "not-an-address, <script>") == PROXY
    assert _address(PROXY, "") == PROXY


@behind_proxies
def test_when_every_entry_is_a_trusted_proxy_the_left_most_is_the_client():
    assert _address(PROXY, "10.0.0.5, bogus, 10.0.0.9") == "10.0.0.5"


@behind_proxies
def test_ports_ipv6_and_ipv4_mapped_addresses_are_normalised():
    assert _address(PROXY, f"{CLIENT}:51000") == CLIENT
    assert _address(PROXY, "[2001:db8::7]:443") == "2001:db8::7"
    assert _address("fd00::1", "2001:DB8:0:0::7") == "2001:db8::7"
    assert _address(f"::ffff:{PROXY}", f"::ffff:{CLIENT}") == CLIENT
    assert _address(f"::ffff:{STRANGER}") == STRANGER


@behind_proxies
def test_an_untrusted_peer_with_a_forged_header_is_its_own_address():
    assert _address(STRANGER, f"{CLIENT}, {PROXY}") == STRANGER


def test_no_request_has_no_address():
    assert client_address(None) is None


def test_trusted_proxies_take_addresses_and_networks_and_name_a_bad_entry():
    assert [str(n) for n in parse_networks(["10.0.0.5", " 10.1.2.3/16 ", "fd00::/8", ""])] == [
        "10.0.0.5/32",
        "10.1.0.0/16",
        "fd00::/8",
    ]
    with pytest.raises(ImproperlyConfigured, match=re.escape("'10.0.0.300'")):
        parse_networks(["10.0.0.0/8", "10.0.0.300"])


# --- Settings at start --------------------------------------------------------------------------


def _manage_check(**env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("TRUSTED_PROXIES", "BEHIND_TLS_PROXY")}
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_tls_proxy_header_without_trusted_proxies_is_refused_at_start():
    refused = _manage_check(BEHIND_TLS_PROXY="true")
    assert refused.returncode != 0
    assert "BEHIND_TLS_PROXY is set but TRUSTED_PROXIES is empty" in refused.stderr
    accepted = _manage_check(BEHIND_TLS_PROXY="true", TRUSTED_PROXIES="10.0.0.0/8,fd00::/8")
    assert accepted.returncode == 0, accepted.stderr


def test_a_bad_trusted_proxy_is_refused_at_start_by_name():
    refused = _manage_check(TRUSTED_PROXIES="10.0.0.0/8,proxy.internal")
    assert refused.returncode != 0
    assert "TRUSTED_PROXIES: 'proxy.internal'" in refused.stderr


# --- Forwarded headers reach Django only from a trusted proxy ------------------------------------


def _seen_by_django(remote_addr: str) -> dict:
    seen = {}

    def view(request):
        seen.update(secure=request.is_secure(), meta=dict(request.META), headers=dict(request.headers))
        return HttpResponse()

    request = RequestFactory().get(
        "/",
        REMOTE_ADDR=remote_addr,
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_X_FORWARDED_FOR=CLIENT,
        HTTP_X_FORWARDED_HOST="evil.example",
        HTTP_X_REAL_IP=CLIENT,
        HTTP_FORWARDED=f"for={CLIENT};proto=https",
    )
    request.headers  # noqa: B018 - built before the middleware runs, as an earlier middleware may do
    ForwardedHeadersMiddleware(view)(request)
    return seen


@override_settings(TRUSTED_PROXIES=PROXIES, SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"))
def test_an_untrusted_peers_forwarded_headers_are_removed_and_its_https_claim_is_not_believed():
    seen = _seen_by_django(STRANGER)
    assert seen["secure"] is False
    forwarded = ("X-Forwarded-Proto", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-Ip", "Forwarded")
    assert not [name for name in forwarded if name in seen["headers"]]
    assert not [key for key in seen["meta"] if "FORWARDED" in key or key == "HTTP_X_REAL_IP"]


@override_settings(TRUSTED_PROXIES=PROXIES, SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"))
def test_a_trusted_proxys_forwarded_headers_are_kept_and_its_https_is_believed():
    seen = _seen_by_django(PROXY)
    assert seen["secure"] is True
    assert seen["meta"]["HTTP_X_FORWARDED_FOR"] == CLIENT
    assert seen["headers"]["X-Forwarded-Host"] == "evil.example"


@override_settings(
    TRUSTED_PROXIES=PROXIES, SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"), SECURE_SSL_REDIRECT=True
)
def test_only_the_trusted_proxys_https_header_spares_a_request_the_redirect_to_https():
    from_stranger = Client().get("/accounts/login/", REMOTE_ADDR=STRANGER, HTTP_X_FORWARDED_PROTO="https")
    assert from_stranger.status_code == 301
    assert from_stranger["Location"].startswith("https://")
    from_proxy = Client().get("/accounts/login/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_PROTO="https")
    assert from_proxy.status_code == 200


# --- The login throttle and the audit trail -----------------------------------------------------


@pytest.fixture
def victim(make_user):
    user = make_user("victim", "the-right-password")
    yield user
    for ip in (CLIENT, OTHER_CLIENT, PROXY, STRANGER):
        for name in ("victim", "nobody-0", "nobody-1", "nobody-2"):
            throttling.reset(username=name, ip=ip)


def _sign_in(client, *, remote_addr: str, forwarded_for: str | None = None, username="victim", password="wrong"):  # noqa: S107 - a wrong one on purpose
    headers = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for else {}
    return client.post(
        "/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=remote_addr, **headers
    )


@behind_proxies
def test_a_failed_sign_in_through_a_trusted_proxy_is_audited_with_the_clients_address(client, victim):
    _sign_in(client, remote_addr=PROXY, forwarded_for=f"1.1.1.1, {CLIENT}")
    assert AuditEntry.objects.get(action="login_failed").ip == CLIENT


@behind_proxies
def test_a_failed_sign_in_from_an_untrusted_peer_is_audited_with_the_peers_address(client, victim):
    _sign_in(client, remote_addr=STRANGER, forwarded_for=CLIENT)
    assert AuditEntry.objects.get(action="login_failed").ip == STRANGER


@behind_proxies
def test_a_sign_in_through_a_trusted_proxy_is_audited_with_the_clients_address(client, victim):
    response = _sign_in(client, remote_addr=PROXY, forwarded_for=CLIENT, password="the-right-password")
    assert response.status_code == 302
    assert AuditEntry.objects.get(action="login").ip == CLIENT


@override_settings(TRUSTED_PROXIES=PROXIES, LOGIN_THROTTLE_IP_FAILURES=3)
def test_the_throttle_locks_the_guessing_client_not_everyone_behind_the_same_proxy(client, victim):
    for n in range(3):
        _sign_in(client, remote_addr=PROXY, forwarded_for=CLIENT, username=f"nobody-{n}")
    lock = AuditEntry.objects.get(action="login_throttled", details__locked="ip")
    assert lock.ip == CLIENT

    locked_out = _sign_in(client, remote_addr=PROXY, forwarded_for=CLIENT, password="the-right-password")
    assert "Too many failed" in locked_out.content.decode()
    assert "_auth_user_id" not in client.session

    other = Client()
    response = _sign_in(other, remote_addr=PROXY, forwarded_for=OTHER_CLIENT, password="the-right-password")
    assert response.status_code == 302
    assert "_auth_user_id" in other.session
