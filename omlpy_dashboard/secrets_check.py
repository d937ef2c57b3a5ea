"""Checks of the secrets the settings receive, so that a weak or placeholder value stops the start, loudly."""

from __future__ import annotations

import base64
import binascii
import hashlib

# Values that documentation, examples and tutorials show; a deployment that kept one has no secret at all.
PLACEHOLDERS = ("change-me", "changeme", "replace-me", "your-secret-key", "secret-key-here", "example")
MIN_SECRET_KEY_LENGTH = 50
MIN_SECRET_KEY_DISTINCT = 5
MIN_AUDIT_KEY_LENGTH = 32


def secret_key_weakness(value: str) -> str | None:
    """Why `value` is not fit to sign sessions in production, or None if it is."""
    lowered = value.lower()
    if any(placeholder in lowered for placeholder in PLACEHOLDERS):
        return "it is a placeholder value"
    if lowered.startswith("django-insecure"):
        return "it is a key generated for development (django-insecure-...)"
    if len(value) < MIN_SECRET_KEY_LENGTH:
        return f"it has {len(value)} characters; at least {MIN_SECRET_KEY_LENGTH} are needed"
    if len(set(value)) < MIN_SECRET_KEY_DISTINCT:
        return f"it has fewer than {MIN_SECRET_KEY_DISTINCT} distinct characters"
    return None


def is_fernet_key(value: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(value.encode())) == 32
    except (binascii.Error, ValueError):
        return False


def audit_key_weakness(value: str) -> str | None:
    """Why `value` is not fit to sign the audit trail, or None if it is."""
    if any(placeholder in value.lower() for placeholder in PLACEHOLDERS):
        return "it is a placeholder value"
    if len(value) < MIN_AUDIT_KEY_LENGTH:
        return f"it has {len(value)} characters; at least {MIN_AUDIT_KEY_LENGTH} are needed"
    if len(set(value)) < MIN_SECRET_KEY_DISTINCT:
        return f"it has fewer than {MIN_SECRET_KEY_DISTINCT} distinct characters"
    return None


def audit_key_id(value: str) -> str:
    """The public name of an audit key, recorded beside each entry it signs: it tells which key to verify with
    and reveals nothing of the key."""
    return hashlib.sha256(value.encode()).hexdigest()[:8]
