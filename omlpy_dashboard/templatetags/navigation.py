"""The header's links: which parts of the site the signed-in user may open (each app decides its own)."""

from django import template

from audit.access import can_view_audit as _can_view_audit
from jobs.selectors.access import can_submit as _can_submit
from jobs.selectors.access import can_view_storage as _can_view_storage

register = template.Library()


@register.filter
def can_view_audit(user) -> bool:
    return _can_view_audit(user)


@register.filter
def can_view_storage(user) -> bool:
    return _can_view_storage(user)


@register.filter
def can_submit(user) -> bool:
    return _can_submit(user)
