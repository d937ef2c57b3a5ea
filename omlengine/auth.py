"""OML's token exchange: password and refresh grants, and the Bearer check every other endpoint makes.

Tokens are JWTs signed with HS256 under a key derived from SECRET_KEY, so any web process can check them
without a database write. `orig_iat` carries the moment the password was given: refreshes keep it, and a
refresh is refused once OMLENGINE_REFRESH_WINDOW has passed since then.

Grants are throttled per user name and per client address (omlengine.throttle). An unknown user name costs
the same password hash as a known one (a dummy hash is checked), so the answer's timing does not say which
users exist.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import check_password, get_hasher, make_password
from django.http import HttpRequest
from django.utils.crypto import salted_hmac

from . import throttle
from .errors import TOO_MANY_REQUESTS, EngineError, bad_request, unauthorized
from .models import EngineUser

_HEADER = {"alg": "HS256", "typ": "JWT"}
_KEY_SALT = "omlengine.auth.token"
_dummy_hashes: dict[str, str] = {}
# Tokens this process has checked in full: token -> (user name, expiry). Emptied when it reaches the bound.
CHECKED_TOKENS_MAX = 4096
_checked_tokens: dict[str, tuple[str, int]] = {}


def grant(body: dict[str, Any], client: str | None = None) -> dict[str, Any]:
    """Answer the token response for a password grant or a refresh grant (`refresh_token` or `token`).

    `client` is the caller's address; a locked user name or address gets 429 before anything is checked.
    """
    grant_type = body.get("grant_type")
    if grant_type not in ("password", "refresh_token"):
        raise bad_request('"grant_type" must be "password" or "refresh_token".')
    username = body.get("username") if grant_type == "password" else None
    username = username.upper() if isinstance(username, str) else None
    wait = throttle.retry_after(username, client)
    if wait is not None:
        raise EngineError(
            429, TOO_MANY_REQUESTS, f"Too many failed sign-in attempts; try again in {wait} s.", retry_after=wait
        )
    try:
        if grant_type == "password":
            answer = _password_grant(body.get("username"), body.get("password"))
        else:
            answer = _refresh_grant(body.get("refresh_token") or body.get("token"))
    except EngineError as exc:
        if exc.status == 401:
            throttle.register_failure(username, client)
        raise
    if username:
        throttle.register_success(username)
    return answer


def authenticate(request: HttpRequest) -> str:
    """The user name a request's Bearer token stands for; 401 when it is missing, bad or expired.

    A token is checked in full (signature, claims, its user still there) the first time this process sees
    it; later requests with it only check its expiry, as a signed token needs nothing more. A client sends the
    same token for up to its lifetime, with requests many times a second (status polls), so this keeps the
    HMAC, the JSON and the user query off almost every request.
    """
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("Authentication required: send Authorization: Bearer <token>.")
    known = _checked_tokens.get(token)
    if known is None:
        claims = _verified(token)
        if not EngineUser.objects.filter(username=claims["sub"]).exists():
            raise unauthorized("The token's user no longer exists.")
        if len(_checked_tokens) >= CHECKED_TOKENS_MAX:
            _checked_tokens.clear()
        known = _checked_tokens[token] = (claims["sub"], claims["exp"])
    username, expires = known
    if time.time() >= expires:
        _checked_tokens.pop(token, None)
        raise unauthorized("The token has expired.")
    return username


def _password_grant(username: object, password: object) -> dict[str, Any]:
    if not isinstance(username, str) or not isinstance(password, str):
        raise bad_request('A password grant needs "username" and "password".')
    user = EngineUser.objects.filter(username=username.upper()).first()
    # Without a user, a dummy hash is checked: the same work, so the same time, as a wrong password.
    matches = check_password(password, user.password if user else _dummy_hash())
    if user is None or not matches:
        raise unauthorized("Invalid user name or password.")
    return _issue(user.username, chain_started=int(time.time()))


def _dummy_hash() -> str:
    """A hash of a random password by the default hasher, made once per hasher (settings may change it)."""
    algorithm = get_hasher().algorithm
    if algorithm not in _dummy_hashes:
        _dummy_hashes[algorithm] = make_password(secrets.token_urlsafe(16))
    return _dummy_hashes[algorithm]


def _refresh_grant(token: object) -> dict[str, Any]:
    if not isinstance(token, str) or not token:
        raise bad_request('A refresh grant needs "refresh_token" (or "token").')
    claims = _verified(token)
    if time.time() > claims["orig_iat"] + settings.OMLENGINE_REFRESH_WINDOW:
        raise unauthorized("The token can no longer be refreshed; sign in with the password again.")
    return _issue(claims["sub"], chain_started=claims["orig_iat"])


def _issue(username: str, chain_started: int) -> dict[str, Any]:
    now = int(time.time())
    lifetime = settings.OMLENGINE_TOKEN_LIFETIME
    claims = {
        "sub": username,
        "iat": now,
        "exp": now + lifetime,
        "orig_iat": chain_started,
        "jti": secrets.token_hex(8),
    }
    return {"accessToken": _encode(claims), "expiresIn": lifetime, "tokenType": "Bearer"}


def _encode(claims: dict[str, Any]) -> str:
    signing_input = f"{_b64(json.dumps(_HEADER).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(_signature(signing_input))}"


def _verified(token: str) -> dict[str, Any]:
    try:
        header, payload, signature = token.split(".")
        valid = hmac.compare_digest(_unb64(signature), _signature(f"{header}.{payload}"))
        claims = json.loads(_unb64(payload)) if valid else None
    except ValueError:
        claims = None
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int):
        raise unauthorized("Invalid token.")
    if time.time() >= claims["exp"]:
        raise unauthorized("The token has expired.")
    return claims


def _signature(signing_input: str) -> bytes:
    return salted_hmac(_KEY_SALT, signing_input, algorithm="sha256").digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
