"""Personal API tokens. The secret is shown once; only its SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from jobs.audit import AuditAction, audit_record
from omlpy_dashboard.fastsql import model_columns, model_from_row

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


def user_for_token(raw: str):
    """The active user a Bearer token belongs to, or None (unknown, revoked, or the user is inactive).

    Every API call asks this, so it is one plain SQL statement (the user with two columns of the token)
    rather than a queryset compiled anew each time.
    """
    if not raw or not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    user_model = get_user_model()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT t.id, t.last_used_at IS NULL OR t.last_used_at < %s, {model_columns(user_model, 'u')} "  # noqa: S608
            f"FROM {user_model._meta.db_table} u JOIN {ApiToken._meta.db_table} t ON t.user_id = u.id "
            "WHERE t.key_hash = %s AND t.revoked_at IS NULL AND u.is_active",
            [timezone.now() - LAST_USED_RESOLUTION, hash_token(raw)],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    token_id, stale, *values = row
    if stale:
        ApiToken.objects.filter(pk=token_id).update(last_used_at=timezone.now())
    return model_from_row(user_model, values)


def tokens_of(user):
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")
