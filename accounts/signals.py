"""Receivers of Django's sign-in signals: each sign-in, sign-out and failed attempt goes into the audit trail,
and failed attempts feed the login throttle."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model

from jobs.audit import AuditAction, audit_record
from omlpy_dashboard.client_address import client_address

from . import throttling


def on_user_logged_in(sender, request, user, **kwargs):
    throttling.register_success(user.get_username())
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
    ip = client_address(request)
    locked = throttling.locked_scope(username, ip)
    if locked is not None:
        audit_record(
            action=AuditAction.LOGIN_THROTTLED,
            request=request,
            target_type="user",
            details={"username": username, "locked": locked.kind, "refused": True},
        )
        return
    audit_record(action=AuditAction.LOGIN_FAILED, request=request, target_type="user", details={"username": username})
    for scope in throttling.register_failure(username, ip):
        audit_record(
            action=AuditAction.LOGIN_THROTTLED,
            request=request,
            target_type="user",
            details={
                "username": username,
                "locked": scope.kind,
                "failures": scope.limit,
                "seconds": settings.LOGIN_THROTTLE_SECONDS,
            },
        )
