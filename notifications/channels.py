"""Sending one notification through its rule's channel. Each function returns when the receiver accepted it
and raises DeliveryError, with a message for the rule's page, when it did not; none retries (delivery does)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import requests
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string

from .models import Channel, Notification, NotificationRule
from .targets import TargetRefused, pinned_post, target_check

USER_AGENT = "OMLPy-Dashboard-Notifications/1"


class DeliveryError(Exception):
    pass


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """HMAC-SHA256 over "{timestamp}.{body}" in hex, as X-OMLPy-Signature carries it (v1=)."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def webhook_body(notification: Notification, rule: NotificationRule) -> bytes:
    if rule.format == NotificationRule.Format.SLACK:
        document = {"text": f"*{notification.subject}*\n{notification.message}"}
    else:
        document = {
            "id": str(notification.key),
            "event": notification.event,
            "subject": notification.subject,
            "message": notification.message,
            "created_at": notification.created_at.isoformat(),
            **notification.payload,
        }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def send_webhook(notification: Notification, rule: NotificationRule) -> None:
    body = webhook_body(notification, rule)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Idempotency-Key": str(notification.key),
        "X-OMLPy-Event": notification.event,
    }
    secret = rule.secret
    if secret:
        headers["X-OMLPy-Signature"] = f"t={timestamp},v1={signature(secret, timestamp, body)}"
    try:
        response = pinned_post(rule.target, data=body, headers=headers, timeout=settings.NOTIFY_TIMEOUT_SECONDS)
    except TargetRefused as exc:
        raise DeliveryError(str(exc)) from None
    except requests.Timeout:
        raise DeliveryError(f"The receiver did not answer within {settings.NOTIFY_TIMEOUT_SECONDS:g} s.") from None
    except requests.RequestException as exc:
        raise DeliveryError(f"Cannot reach the receiver: {exc.__class__.__name__}.") from None
    with response:
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"The receiver answered HTTP {response.status_code}.")


def send_email(notification: Notification, rule: NotificationRule) -> None:
    context = {"notification": notification, "job": notification.payload.get("job") or {}}
    mail = EmailMultiAlternatives(
        subject=notification.subject,
        body=render_to_string("notifications/email.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[rule.target],
        headers={"Message-ID": f"<{notification.key}@omlpy.notifications>", "X-OMLPy-Event": notification.event},
        connection=get_connection(timeout=settings.EMAIL_TIMEOUT),
    )
    mail.attach_alternative(render_to_string("notifications/email.html", context), "text/html")
    try:
        mail.send()
    except (OSError, ValueError) as exc:  # smtplib's errors are OSErrors
        raise DeliveryError(f"The mail server refused or could not be reached: {exc.__class__.__name__}.") from None


def send_apprise(notification: Notification, rule: NotificationRule) -> None:
    import apprise

    try:
        target_check(Channel.APPRISE, rule.target)
    except TargetRefused as exc:
        raise DeliveryError(str(exc)) from None
    sender = apprise.Apprise()
    if not sender.add(rule.target):
        raise DeliveryError("Apprise does not accept this URL.")
    ok = sender.notify(title=notification.subject, body=notification.message)
    if not ok:
        raise DeliveryError("The service refused the notification or could not be reached (Apprise).")


SENDERS = {
    Channel.EMAIL: send_email,
    Channel.WEBHOOK: send_webhook,
    Channel.APPRISE: send_apprise,
}
