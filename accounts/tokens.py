"""Personal API tokens. The secret is shown once; only its SHA-256 is stored. Every token expires, and a
read-only token is refused the API's writes."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from audit.services import AuditAction, audit_record
from omlpy_dashboard.fastsql import token_and_user

from .models import ApiToken

TOKEN_PREFIX = "omlpy_"  # noqa: S105 - a public marker, not a secret
# last_used_at is written at most this often per token, so that busy API clients do not write on every call.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def lifetime_error(days: int) -> str | None:
    """Why `days` is not a lifetime a token may be given; None when it is."""
    if not 1 <= days <= settings.API_TOKEN_MAX_DAYS:
        return f"A token lives between 1 and {settings.API_TOKEN_MAX_DAYS} days."
    return None


def token_create(
    *, user, name: str, days: int | None = None, read_only: bool = False, request=None, via: str = "web"
) -> tuple[ApiToken, str]:
    """A new token for `user`, expiring in `days` (API_TOKEN_DEFAULT_DAYS when None); returns it with its
    secret, which is never stored nor shown again. Raises ValueError for a lifetime out of bounds."""
    days = settings.API_TOKEN_DEFAULT_DAYS if days is None else days
    error = lifetime_error(days)
    if error:
        raise ValueError(error)
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    scope = ApiToken.Scope.READ_ONLY if read_only else ApiToken.Scope.READ_WRITE
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name.strip()[:100] or "API token",
            prefix=raw[:12],
            key_hash=hash_token(raw),
            scope=scope,
            expires_at=timezone.now() + timedelta(days=days),
        )
        audit_record(
            action=AuditAction.TOKEN_CREATED,
            actor=user if request is None else None,
            request=request,
            target_type="api_token",
            target_id=str(token.pk),
            details={
                "name": token.name,
                "prefix": token.prefix,
                "owner": user.get_username(),
                "via": via,
                "scope": token.scope,
                "expires_at": token.expires_at.isoformat(),
            },
        )
    return token, raw


def token_revoke(*, token: ApiToken, request=None, actor=None, reason: str = "") -> bool:
    """Revoke `token`; False if it was already revoked."""
    with transaction.atomic():
        revoked = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if revoked:
            audit_record(
                action=AuditAction.TOKEN_REVOKED,
                actor=actor,
                request=request,
                target_type="api_token",
                target_id=str(token.pk),
                details={
                    "name": token.name,
                    "prefix": token.prefix,
                    "owner": token.user.get_username(),
                    **({"reason": reason} if reason else {}),
                },
            )
    return bool(revoked)


@dataclass(frozen=True)
class TokenAuth:
    """A Bearer token that names an active user, and that user; expired or not, so that the API can say so."""

    token: ApiToken
    user: Any

    @property
    def expired(self) -> bool:
        return self.token.is_expired

    @property
    def read_only(self) -> bool:
        return self.token.is_read_only

    @property
    def expires_at(self) -> datetime:
        return self.token.expires_at


def token_lookup(raw: str) -> TokenAuth | None:
    """The token `raw` is and its user; None when it is unknown, revoked, or its user is inactive.

    One statement, the token with its user (omlpy_dashboard.fastsql: every API call asks). An expired token is
    returned, marked expired, and not noted as used.
    """
    if not raw or not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    now = timezone.now()
    found = token_and_user(ApiToken, get_user_model(), hash_token(raw), now - LAST_USED_RESOLUTION)
    if found is None:
        return None
    stale, token, user = found
    auth = TokenAuth(token=token, user=user)
    if stale and not auth.expired:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return auth


def user_for_token(raw: str):
    """The active user a Bearer token belongs to, or None (unknown, revoked, expired, or the user is inactive)."""
    auth = token_lookup(raw)
    return auth.user if auth is not None and not auth.expired else None


def tokens_of(user):
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")
