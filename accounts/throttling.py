"""Login throttling against password guessing, per user name and per client address, in the shared cache.

Failures are counted in a window of LOGIN_THROTTLE_SECONDS that starts with the first failure. Reaching
LOGIN_THROTTLE_FAILURES for a user name (LOGIN_THROTTLE_IP_FAILURES for an address) locks sign-in for that
name (address) for LOGIN_THROTTLE_SECONDS. A successful sign-in clears the user name's count.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache


@dataclass(frozen=True)
class Scope:
    kind: str  # "user" or "ip"
    value: str

    def _key(self, what: str) -> str:
        digest = hashlib.sha256(self.value.encode()).hexdigest()[:32]
        return f"login-throttle:{what}:{self.kind}:{digest}"

    @property
    def failures_key(self) -> str:
        return self._key("failures")

    @property
    def lock_key(self) -> str:
        return self._key("lock")

    @property
    def limit(self) -> int:
        return settings.LOGIN_THROTTLE_FAILURES if self.kind == "user" else settings.LOGIN_THROTTLE_IP_FAILURES


def scopes(username: str | None, ip: str | None) -> list[Scope]:
    found = []
    if username:
        found.append(Scope("user", username.strip().lower()))
    if ip:
        found.append(Scope("ip", ip))
    return found


def locked_scope(username: str | None, ip: str | None) -> Scope | None:
    """The first scope (user name, then address) under a lock, if any."""
    for scope in scopes(username, ip):
        if cache.get(scope.lock_key):
            return scope
    return None


def register_failure(username: str | None, ip: str | None) -> list[Scope]:
    """Count one failed sign-in; returns the scopes this failure has just locked."""
    window = settings.LOGIN_THROTTLE_SECONDS
    newly_locked = []
    for scope in scopes(username, ip):
        cache.add(scope.failures_key, 0, timeout=window)
        try:
            count = cache.incr(scope.failures_key)
        except ValueError:  # expired between add and incr
            cache.set(scope.failures_key, 1, timeout=window)
            count = 1
        if count >= scope.limit and cache.add(scope.lock_key, 1, timeout=window):
            newly_locked.append(scope)
    return newly_locked


def register_success(username: str | None) -> None:
    for scope in scopes(username, None):
        cache.delete(scope.failures_key)


def reset(username: str | None = None, ip: str | None = None) -> None:
    """Forget failures and locks, e.g. after an administrator has checked an account."""
    for scope in scopes(username, ip):
        cache.delete_many([scope.failures_key, scope.lock_key])
