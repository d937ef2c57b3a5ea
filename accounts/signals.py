"""Receivers of Django's sign-in signals: each sign-in, sign-out and failed attempt goes into the audit trail,
and sign-ins and failed attempts feed the login throttle."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from audit.services import AuditAction, audit_record

from . import throttling


def on_user_logged_in(sender, request, user, **kwargs):
    throttling.register_success(request, user.get_username())
    via = {"via": "sso"} if getattr(user, "backend", "") == "accounts.oidc.OidcBackend" else {}
    audit_record(
        action=AuditAction.LOGIN, actor=user, request=request, target_type="user", target_id=str(user.pk), details=via
    )


def on_user_logged_out(sender, request, user, **kwargs):
    if user is None:
        return
    audit_record(action=AuditAction.LOGOUT, actor=user, request=request, target_type="user", target_id=str(user.pk))


def on_user_login_failed(sender, credentials, request=None, **kwargs):
    if "nonce" in credentials and "password" not in credentials:
        # The identity provider's callback: accounts.oidc audits its outcome; it is no password guess.
        return
    username = str(credentials.get(get_user_model().USERNAME_FIELD) or "")[:150]
    refused = throttling.refused_by(request, username)
    if refused is not None:
        audit_record(
            action=AuditAction.LOGIN_THROTTLED,
            request=request,
            target_type="user",
            details={
                "username": username,
                "locked": refused.scope,
                "refused": True,
                "retry_after": throttling.remaining_seconds(refused),
            },
        )
        return
    audit_record(action=AuditAction.LOGIN_FAILED, request=request, target_type="user", details={"username": username})
    # Each lock this failure takes is audited where it is taken.
    throttling.register_failure(request, username)
