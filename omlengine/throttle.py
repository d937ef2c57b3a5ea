"""Throttling of the token endpoint against password guessing, per user name and per client address.

Failed grants are counted in the shared cache, in a window of OMLENGINE_TOKEN_THROTTLE_SECONDS that starts with
the first failure. Reaching OMLENGINE_TOKEN_THROTTLE_FAILURES for a user name (OMLENGINE_TOKEN_THROTTLE_IP_FAILURES
for an address) locks grants for that name (address) for OMLENGINE_TOKEN_THROTTLE_SECONDS; a locked request is
answered 429 with Retry-After before any password is checked. Unknown user names count like known ones, so the
lock says nothing about which users exist. A successful password grant clears its user name's count.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache


@dataclass(frozen=True)
class Scope:
    kind: str  # "user" or "ip"
    value: str

    def _key(self, what: str) -> str:
        digest = hashlib.sha256(self.value.encode()).hexdigest()[:32]
        return f"omlengine-token-throttle:{what}:{self.kind}:{digest}"

    @property
    def failures_key(self) -> str:
        return self._key("failures")

    @property
    def lock_key(self) -> str:
        return self._key("lock")

    @property
    def limit(self) -> int:
        if self.kind == "user":
            return settings.OMLENGINE_TOKEN_THROTTLE_FAILURES
        return settings.OMLENGINE_TOKEN_THROTTLE_IP_FAILURES


def scopes(username: str | None, ip: str | None) -> list[Scope]:
    found = []
    if username:
        found.append(Scope("user", username.strip().upper()))
    if ip:
        found.append(Scope("ip", ip))
    return found


def retry_after(username: str | None, ip: str | None) -> int | None:
    """Seconds until the longest lock on the user name or the address ends; None when neither is locked."""
    now = time.time()
    ends = [until for scope in scopes(username, ip) if (until := cache.get(scope.lock_key)) is not None]
    return max(1, math.ceil(max(ends) - now)) if ends else None


def register_failure(username: str | None, ip: str | None) -> None:
    """Count one failed grant; a count that reaches its limit locks its scope for the window."""
    window = settings.OMLENGINE_TOKEN_THROTTLE_SECONDS
    for scope in scopes(username, ip):
        cache.add(scope.failures_key, 0, timeout=window)
        try:
            count = cache.incr(scope.failures_key)
        except ValueError:  # expired between add and incr
            cache.set(scope.failures_key, 1, timeout=window)
            count = 1
        if count >= scope.limit:
            cache.add(scope.lock_key, time.time() + window, timeout=window)


def register_success(username: str) -> None:
    for scope in scopes(username, None):
        cache.delete(scope.failures_key)


def reset(username: str | None = None, ip: str | None = None) -> None:
    """Forget failures and locks (an administrator's decision, and tests)."""
    for scope in scopes(username, ip):
        cache.delete_many([scope.failures_key, scope.lock_key])
