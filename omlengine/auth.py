"""OML's token exchange: password and refresh grants, and the Bearer check every other endpoint makes.

Tokens are JWTs signed with HS256 under a key derived from SECRET_KEY, so any web process can check them
without a database write. `orig_iat` carries the moment the password was given: refreshes keep it, and a
refresh is refused once OMLENGINE_REFRESH_WINDOW has passed since then.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.http import HttpRequest
from django.utils.crypto import salted_hmac

from .errors import bad_request, unauthorized
from .models import EngineUser

_HEADER = {"alg": "HS256", "typ": "JWT"}
_KEY_SALT = "omlengine.auth.token"


def grant(body: dict[str, Any]) -> dict[str, Any]:
    """Answer the token response for a password grant or a refresh grant (`refresh_token` or `token`)."""
    grant_type = body.get("grant_type")
    if grant_type == "password":
        return _password_grant(body.get("username"), body.get("password"))
    if grant_type == "refresh_token":
        return _refresh_grant(body.get("refresh_token") or body.get("token"))
    raise bad_request('"grant_type" must be "password" or "refresh_token".')


def authenticate(request: HttpRequest) -> str:
    """The user name a request's Bearer token stands for; 401 when it is missing, bad or expired."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Authentication required: send Authorization: Bearer <token>.")
    claims = _verified(token.strip())
    if not EngineUser.objects.filter(username=claims["sub"]).exists():
        raise unauthorized("The token's user no longer exists.")
    return claims["sub"]


def _password_grant(username: object, password: object) -> dict[str, Any]:
    if not isinstance(username, str) or not isinstance(password, str):
        raise bad_request('A password grant needs "username" and "password".')
    user = EngineUser.objects.filter(username=username.upper()).first()
    if user is None or not check_password(password, user.password):
        raise unauthorized("Invalid user name or password.")
    return _issue(user.username, chain_started=int(time.time()))


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
