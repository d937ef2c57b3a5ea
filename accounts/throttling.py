"""Sign-in throttling against password guessing, that a guesser cannot turn against the account's owner.

Three limits, each counted in a window of LOGIN_THROTTLE_SECONDS that starts with its first failure:

1. An account from one address (LOGIN_THROTTLE_FAILURES): locks that user name from that address only, so
   that failures from one place never shut the account out everywhere.
2. An account from many addresses (LOGIN_THROTTLE_USER_FAILURES, much higher): counts only failures from
   clients that never signed in as that user (accounts.known_clients), and its lock refuses only those, so that
   a guesser elsewhere cannot lock the owner out of the browsers and addresses they use.
3. An address across accounts (LOGIN_THROTTLE_IP_FAILURES): one address spraying many user names.

A lock lasts LOGIN_THROTTLE_SECONDS. While it holds, sign-in is refused before the password is checked and the
answer says how many seconds remain; refused attempts are not counted again. Nothing sleeps in a request.
A successful sign-in clears only the count of its own account and address: clearing the wider counts would let
a guesser with an account of their own reset them at will.

Failures are counted in the shared cache (atomic increments on Redis). A lock is a row (LoginLock), read by
one query per sign-in attempt and no other request, so that administrators can list and lift current locks, in
the admin or with `manage.py login_unlock`. Locks and unlocks are written to the audit trail.

Why not django-axes (8.3, evaluated): it compares the largest of its counters with a single
AXES_FAILURE_LIMIT, so one setting cannot give the account-and-address, account-wide and address-wide
counts their own limits; its only exemption (AXES_WHITELIST_CALLABLE) drops a client from every count at
once, not from the account-wide lock alone; its lockout answer gives the configured cool-off rather than the
time left; its cache handler extends the cool-off on every failure; and its own reset commands and admin
deletions bypass our audit trail. It keys on user name and address together and accepts our client_address
through AXES_CLIENT_IP_CALLABLE, but those gaps would need as much code around it as this module has.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from audit.services import AuditAction, audit_record
from omlpy_dashboard.client_address import client_address

from . import known_clients
from .models import LoginLock

Scope = LoginLock.Scope
# Set on the request by the sign-in that was refused (or that took a lock), for the form and the receivers.
_LOCK_ATTR = "login_lock"
_REFUSED_ATTR = "login_lock_refused"


def normalize_username(username: str | None) -> str:
    """The user name the throttle counts: as typed, trimmed, lower-cased, cut to the column's size."""
    return str(username or "").strip().lower()[:150]


def _limit(scope: str) -> int:
    return {
        Scope.USER_IP: settings.LOGIN_THROTTLE_FAILURES,
        Scope.USER: settings.LOGIN_THROTTLE_USER_FAILURES,
        Scope.IP: settings.LOGIN_THROTTLE_IP_FAILURES,
    }[scope]


def _counter_key(scope: str, username: str, address: str | None) -> str:
    subject = {Scope.USER_IP: f"{username}\n{address}", Scope.USER: username, Scope.IP: address or ""}[scope]
    return f"login-throttle:failures:{scope}:{hashlib.sha256(subject.encode()).hexdigest()[:32]}"


def _count_failure(key: str) -> int:
    """Add one failure to a counter whose window ends LOGIN_THROTTLE_SECONDS after its first failure."""
    window = settings.LOGIN_THROTTLE_SECONDS
    now = time.time()
    cache.add(f"{key}:ends", now + window, timeout=window)
    cache.add(key, 0, timeout=window)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window)
        count = 1
    # The file and database caches rewrite a key with their default timeout on incr: put the window's end back.
    ends = cache.get(f"{key}:ends") or now + window
    cache.touch(key, max(1, math.ceil(ends - now)))
    return count


def _clear_counter(key: str) -> None:
    cache.delete_many([key, f"{key}:ends"])


def _subjects(username: str, address: str | None) -> list[tuple[str, str, str | None]]:
    """The (scope, username, address) a failure of `username` from `address` counts against."""
    found: list[tuple[str, str, str | None]] = []
    if username and address:
        found.append((Scope.USER_IP, username, address))
    if username:
        found.append((Scope.USER, username, None))
    if address:
        found.append((Scope.IP, "", address))
    return found


# --- Checking -----------------------------------------------------------------------------------


def remaining_seconds(lock: LoginLock) -> int:
    """Whole seconds until the lock ends, rounded up: 'try again in N s' is never too early."""
    return max(1, math.ceil((lock.locked_until - timezone.now()).total_seconds()))


def lock_in_force(request: HttpRequest | None, username: str | None) -> LoginLock | None:
    """The lock that refuses this client signing in as `username`, the longest first; one query."""
    name = normalize_username(username)
    address = client_address(request)
    condition = Q()
    for scope, scope_name, scope_address in _subjects(name, address):
        condition |= Q(scope=scope, username=scope_name, address=scope_address)
    if not condition:
        return None
    for lock in LoginLock.objects.filter(condition, locked_until__gt=timezone.now()).order_by("-locked_until"):
        if lock.scope == Scope.USER and known_clients.is_known(request, name):
            continue
        return lock
    return None


def refuse(request: HttpRequest | None, lock: LoginLock) -> None:
    """Mark the sign-in attempt of `request` as refused by `lock` (the backend calls this)."""
    if request is not None:
        setattr(request, _LOCK_ATTR, lock)
        setattr(request, _REFUSED_ATTR, True)


def refused_by(request: HttpRequest | None, username: str | None) -> LoginLock | None:
    """The lock that refused this failed attempt before its password was checked, if one did."""
    if request is None:  # a sign-in outside a request cannot be marked: ask again
        return lock_in_force(None, username)
    return getattr(request, _LOCK_ATTR, None) if getattr(request, _REFUSED_ATTR, False) else None


def lock_of_attempt(request: HttpRequest | None) -> LoginLock | None:
    """The lock that refused this attempt, or that this attempt's failure has just taken."""
    return getattr(request, _LOCK_ATTR, None)


# --- Counting -----------------------------------------------------------------------------------


def register_failure(request: HttpRequest | None, username: str | None) -> list[LoginLock]:
    """Count one failed sign-in (its password was checked and wrong); returns the locks it has just taken."""
    name = normalize_username(username)
    address = client_address(request)
    taken = []
    for scope, scope_name, scope_address in _subjects(name, address):
        if scope == Scope.USER and known_clients.is_known(request, name):
            continue  # the owner's typos do not count towards locking out strangers
        key = _counter_key(scope, scope_name, scope_address)
        if _count_failure(key) >= _limit(scope):
            taken.append(_lock(scope=scope, username=scope_name, address=scope_address, request=request))
            _clear_counter(key)
    if taken and request is not None:
        setattr(request, _LOCK_ATTR, max(taken, key=lambda lock: lock.locked_until))
    return taken


def _lock(*, scope: str, username: str, address: str | None, request: HttpRequest | None) -> LoginLock:
    now = timezone.now()
    seconds = settings.LOGIN_THROTTLE_SECONDS
    with transaction.atomic():
        # Ended locks are of no further use (the audit trail keeps them); the table holds little beyond the
        # locks in force, so this needs no index of its own.
        LoginLock.objects.filter(locked_until__lte=now).delete()
        lock = LoginLock.objects.create(
            scope=scope,
            username=username,
            address=address,
            failures=_limit(scope),
            created_at=now,
            locked_until=now + timedelta(seconds=seconds),
        )
        audit_record(
            action=AuditAction.LOGIN_THROTTLED,
            request=request,
            target_type="user",
            details={"username": username, "locked": scope, "failures": lock.failures, "seconds": seconds},
        )
    return lock


def register_success(request: HttpRequest | None, username: str | None) -> None:
    """A sign-in succeeded: clear its account-and-address count, and remember the client as known."""
    name = normalize_username(username)
    address = client_address(request)
    if name and address:
        _clear_counter(_counter_key(Scope.USER_IP, name, address))
    known_clients.remember(request, name)


def reset(username: str | None = None, ip: str | None = None) -> None:
    """Forget the failure counts of a user name, of an address, and of the two together."""
    name = normalize_username(username)
    for scope, scope_name, scope_address in _subjects(name, ip):
        _clear_counter(_counter_key(scope, scope_name, scope_address))


# --- Listing and lifting locks ------------------------------------------------------------------


def current_locks(*, username: str | None = None, address: str | None = None) -> QuerySet[LoginLock]:
    """Locks in force: of a user name (account-wide and per address), of an address (address-wide and per
    account), or with both, the lock of that user name at that address."""
    locks = LoginLock.objects.filter(locked_until__gt=timezone.now())
    if username:
        locks = locks.filter(username=normalize_username(username))
    if address:
        locks = locks.filter(address=address)
    return locks


def login_unlock(*, locks: Iterable[LoginLock], request: HttpRequest | None = None, via: str) -> list[LoginLock]:
    """Lift `locks` and clear their counts; each lift is audited. Returns the locks that were still there."""
    lifted = []
    with transaction.atomic():
        for lock in locks:
            deleted, _ = LoginLock.objects.filter(pk=lock.pk).delete()
            if not deleted:
                continue  # lifted meanwhile by someone else
            audit_record(
                action=AuditAction.LOGIN_UNLOCKED,
                request=request,
                target_type="user" if lock.username else "address",
                target_id=lock.username or str(lock.address),
                details={
                    "username": lock.username,
                    "address": lock.address,
                    "locked": lock.scope,
                    "locked_until": lock.locked_until.isoformat(),
                    "via": via,
                },
            )
            lifted.append(lock)
    for lock in lifted:
        _clear_counter(_counter_key(lock.scope, lock.username, lock.address))
    return lifted
