"""Writes of the accounts app (tokens live in accounts.tokens)."""

from __future__ import annotations

from django.db import transaction

from jobs.audit import AuditAction, audit_record

from .models import Profile


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
