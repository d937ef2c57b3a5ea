"""Writes of the accounts app (tokens live in accounts.tokens)."""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone

from audit.services import AuditAction, audit_record

from .models import ApiToken, OidcIdentity, Profile


def profile_for(user) -> Profile:
    profile, _ = Profile.objects.get_or_create(user=user)
    return profile


def profile_update(*, profile: Profile, timezone_name: str, request=None) -> Profile:
    """Change the time zone the user's pages show times in."""
    with transaction.atomic():
        before = profile.timezone
        profile.timezone = timezone_name
        profile.full_clean()
        profile.save(update_fields=["timezone"])
        if before != timezone_name:
            audit_record(
                action=AuditAction.TIMEZONE_CHANGED,
                request=request,
                target_type="user",
                target_id=str(profile.user_id),
                details={"from": before, "to": timezone_name},
            )
    return profile


def sessions_end(*, user) -> int:
    """Delete every live session of `user` from the session store; returns how many.

    Sessions hold the user's id only inside their encoded data, so the live ones are scanned (the database
    session backend; `cached_db` is cleared through its store as well).
    """
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    store = store_class()
    keys = []
    live = Session.objects.filter(expire_date__gt=timezone.now()).values_list("session_key", "session_data")
    for key, data in live.iterator(chunk_size=500):
        if str(store.decode(data).get(SESSION_KEY, "")) == str(user.pk):
            keys.append(key)
    for key in keys:
        store.delete(key)
    return len(keys)


def user_access_end(*, user, reason: str, request=None, actor=None) -> None:
    """After `user` was deactivated: end their sessions and revoke their API tokens, audited with `reason`."""
    from .tokens import token_revoke

    with transaction.atomic():
        ended = sessions_end(user=user)
        audit_record(
            action=AuditAction.SESSIONS_ENDED,
            actor=actor,
            request=request,
            target_type="user",
            target_id=str(user.pk),
            details={"user": user.get_username(), "sessions": ended, "reason": reason},
        )
        for token in ApiToken.objects.filter(user=user, revoked_at__isnull=True).select_related("user"):
            token_revoke(token=token, request=request, actor=actor, reason=reason)


def user_deactivation_by_admin(*, user, request) -> None:
    """An administrator changed `user`'s active flag in the admin (already saved): their decision stands over
    the provider's claims, and a deactivation ends the user's access at once."""
    OidcIdentity.objects.filter(user=user).update(deactivated_by_claims=False)
    if not user.is_active:
        user_access_end(user=user, reason="deactivated by an administrator", request=request)
