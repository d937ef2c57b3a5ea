"""Checks of the single sign-on settings, run by the settings module at start (plain Python, no Django)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

# Algorithms the ID token may be signed with: RSA and EC keys from the provider's JWKS, or HS256 with the
# client secret.
SIGN_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "HS256")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def provider_url_problem(name: str, url: str) -> str | None:
    """Why `url` cannot be the provider's `name` URL, or None. Plain http is refused except on loopback:
    the client secret and the tokens travel over it."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"{name} must be an absolute https URL, not {url!r}"
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        return f"{name} must use https (plain http only on a loopback address): {url!r}"
    return None


def sso_settings_problems(
    *, enabled: bool, issuer: str, endpoints: dict[str, str], client_id: str, client_secret: str, algorithm: str
) -> list[str]:
    """What is missing or wrong in the OIDC_* settings when single sign-on is on."""
    if not enabled:
        return []
    problems = []
    if not client_id or not client_secret:
        problems.append("OIDC_CLIENT_ID and OIDC_CLIENT_SECRET must be set (register the dashboard at the provider)")
    if algorithm not in SIGN_ALGORITHMS:
        problems.append(f"OIDC_SIGN_ALGO must be one of {', '.join(SIGN_ALGORITHMS)}, not {algorithm!r}")
    needed = ["OIDC_AUTHORIZATION_ENDPOINT", "OIDC_TOKEN_ENDPOINT"]
    if not algorithm.startswith("HS"):
        needed.append("OIDC_JWKS_ENDPOINT")
    if not issuer and not all(endpoints.get(name) for name in needed):
        problems.append(f"set OIDC_ISSUER (its discovery document names the endpoints) or {', '.join(needed)}")
    for name, url in [("OIDC_ISSUER", issuer), *endpoints.items()]:
        problem = url and provider_url_problem(name, url)
        if problem:
            problems.append(problem)
    return problems
