"""The engine's reads that views and the worker share."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from .errors import SCRIPT_NOT_FOUND, bad_request
from .models import EngineScript


def scripts_visible(*, user: str) -> QuerySet[EngineScript]:
    """The caller's own scripts and every global one."""
    return EngineScript.objects.filter(Q(owner=user) | Q(is_global=True))


def script_for_call(*, user: str, name: str, owner: str | None = None) -> EngineScript:
    """The script a call names: the owner's when one is named, else the caller's own, else a global one."""
    candidates = scripts_visible(user=user).filter(name=name)
    if owner is not None:
        candidates = candidates.filter(owner=owner.upper())
    # The caller's own script wins over a global one of the same name.
    scripts = sorted(candidates, key=lambda script: (script.owner != user, script.created_at))
    if not scripts:
        whose = f" owned by {owner.upper()}" if owner else ""
        raise bad_request(f"Script {name}{whose} not found, or not visible to {user}.", SCRIPT_NOT_FOUND)
    return scripts[0]
