"""Encryption of secrets at rest (OML passwords), with keys from the environment (settings.ENCRYPTION_KEYS)."""

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@lru_cache(maxsize=4)
def _keys(values: tuple[str, ...]) -> tuple[MultiFernet, tuple[Fernet, ...]]:
    try:
        fernets = tuple(Fernet(value) for value in values)
        return MultiFernet(list(fernets)), fernets
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "ENCRYPTION_KEYS must hold Fernet keys (32 url-safe base64-encoded bytes each)."
        ) from exc


def _keyring() -> tuple[MultiFernet, tuple[Fernet, ...]]:
    # Looked up by the setting's current value, so that a changed ENCRYPTION_KEYS takes effect at once.
    return _keys(tuple(settings.ENCRYPTION_KEYS))


def _fernet() -> MultiFernet:
    return _keyring()[0]


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode("ascii")).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted with ENCRYPTION_KEYS; was the key changed without rotation?"
        ) from exc


def key_position(token: str) -> int | None:
    """Which key of ENCRYPTION_KEYS (1 is the first) decrypts `token`; None when none of them does."""
    for position, fernet in enumerate(_keyring()[1], start=1):
        try:
            fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            continue
        return position
    return None


def reencrypt(token: str) -> str:
    """`token` encrypted again under the first key; raises InvalidToken when no key decrypts it."""
    return _fernet().rotate(token.encode("ascii")).decode("ascii")
