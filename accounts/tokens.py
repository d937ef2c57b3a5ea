"""Personal API tokens. The secret is shown once; only its SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from jobs.audit import AuditAction, audit_record

from .models import ApiToken

TOKEN_PREFIX = "omlpy_"  # noqa: S105 - a public marker, not a secret
# last_used_at is written at most this often per token, so that busy API clients do not write on every call.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_create(*, user, name: str, request=None, via: str = "web") -> tuple[ApiToken, str]:
    """A new token for `user`; returns it with its secret, which is never stored nor shown again."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, name=name.strip()[:100] or "API token", prefix=raw[:12], key_hash=hash_token(raw)
        )
        audit_record(
            action=AuditAction.TOKEN_CREATED,
            actor=user if request is None else None,
            request=request,
            target_type="api_token",
            target_id=str(token.pk),
            details={"name": token.name, "prefix": token.prefix, "owner": user.get_username(), "via": via},
        )
    return token, raw


def token_revoke(*, token: ApiToken, request=None, actor=None) -> bool:
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
                details={"name": token.name, "prefix": token.prefix, "owner": token.user.get_username()},
            )
    return bool(revoked)


def user_for_token(raw: str):
    """The active user a Bearer token belongs to, or None (unknown, revoked, or the user is inactive)."""
    if not raw or not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=hash_token(raw), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


def tokens_of(user):
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")
