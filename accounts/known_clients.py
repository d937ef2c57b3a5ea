"""Clients that have signed in as a user before: the account-wide sign-in lock does not apply to them.

Someone guessing one account's password from many addresses trips the account-wide limit, and the lock it
takes must not shut out the account's owner. A client counts as known for a user when

- its browser carries the signed "known device" cookie that a successful sign-in as that user set (it names
  the user by a hash, so that a shared browser's cookie does not list who used it), or
- its address is one of the last addresses the user signed in from (kept in the shared cache).

Both last LOGIN_THROTTLE_KNOWN_DAYS from the latest successful sign-in. Neither is a credential: a known
client still needs the password, and stays under the per-address and per-account-and-address limits.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

from omlpy_dashboard.client_address import client_address

COOKIE_NAME = "known_device"
_COOKIE_SALT = "accounts.known-device"
# How many users one browser cookie remembers, and how many addresses are remembered per user.
COOKIE_USERS_KEPT = 10
ADDRESSES_KEPT = 10
# Set by remember() on the request of a successful sign-in; the sign-in view writes the cookie from it.
_PENDING_ATTR = "known_device_tokens"


def _max_age() -> int:
    return settings.LOGIN_THROTTLE_KNOWN_DAYS * 24 * 3600


def _user_token(username: str) -> str:
    return hashlib.sha256(f"known-device:{username}".encode()).hexdigest()[:24]


def _addresses_key(username: str) -> str:
    return "login-throttle:known-addresses:" + hashlib.sha256(username.encode()).hexdigest()[:32]


def _cookie_tokens(request: HttpRequest) -> list[str]:
    # A missing, altered or expired cookie reads as empty.
    value = request.get_signed_cookie(COOKIE_NAME, default="", salt=_COOKIE_SALT, max_age=_max_age())
    return [token for token in value.split(",") if token]


def is_known(request: HttpRequest | None, username: str) -> bool:
    """Whether this client has signed in as `username` (normalized) within LOGIN_THROTTLE_KNOWN_DAYS."""
    if request is None or not username:
        return False
    if _user_token(username) in _cookie_tokens(request):
        return True
    address = client_address(request)
    return address is not None and address in (cache.get(_addresses_key(username)) or [])


def remember(request: HttpRequest | None, username: str) -> None:
    """Record a successful sign-in as `username` (normalized) by this client."""
    if request is None or not username:
        return
    address = client_address(request)
    if address is not None:
        key = _addresses_key(username)
        # Read-modify-write: two simultaneous sign-ins of one user may keep only one of their addresses, which
        # costs nothing but the exemption of that address until its next sign-in.
        kept = [address] + [known for known in (cache.get(key) or []) if known != address]
        cache.set(key, kept[:ADDRESSES_KEPT], timeout=_max_age())
    token = _user_token(username)
    tokens = [token] + [known for known in _cookie_tokens(request) if known != token]
    setattr(request, _PENDING_ATTR, tokens[:COOKIE_USERS_KEPT])


def set_cookie(request: HttpRequest, response: HttpResponse) -> None:
    """Write the known-device cookie when this request signed a user in."""
    tokens = getattr(request, _PENDING_ATTR, None)
    if not tokens:
        return
    response.set_signed_cookie(
        COOKIE_NAME,
        ",".join(tokens),
        salt=_COOKIE_SALT,
        max_age=_max_age(),
        httponly=True,
        secure=settings.SESSION_COOKIE_SECURE,
        samesite="Lax",
    )


def forget(username: str) -> None:
    """Forget the addresses `username` (normalized) signed in from; browsers keep their cookies."""
    cache.delete(_addresses_key(username))
