"""Template filters for the jobs pages: times in the user's zone with the zone named, durations, JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from django import template
from django.utils import timezone

register = template.Library()


@register.filter
def zoned(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A stored (UTC) time in the active time zone with the zone named: "2026-11-27 09:41:03 CET"."""
    if not value:
        return ""
    if timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    local = timezone.localtime(value)
    return f"{local.strftime(fmt)} {local.tzname() or timezone.get_current_timezone_name()}"


@register.filter
def seconds(value: float | None) -> str:
    """A duration in seconds for people: "0.42 s", "12.3 s", "4 min 05 s", "2 h 03 min"."""
    if value is None:
        return ""
    value = float(value)
    if value < 0:
        value = 0.0
    if value < 10:
        return f"{value:.2f} s"
    if value < 60:
        return f"{value:.1f} s"
    whole = round(value)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    hours, rest = divmod(whole, 3600)
    if hours < 48:
        return f"{hours} h {rest // 60:02d} min"
    return f"{hours // 24} d {hours % 24:02d} h"


@register.filter
def pretty_json(value) -> str:
    """A value as indented JSON (autoescaped by the template like any string)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


@register.filter
def get_item(mapping, key):
    """mapping[key] in a template, or None."""
    try:
        return mapping.get(key)
    except AttributeError:
        return None


@register.filter
def job_elapsed(job) -> float | None:
    """Seconds from creation to the end, or until now for a job that has not ended."""
    if job is None or job.created_at is None:
        return None
    end = job.finished_at or (None if job.is_terminal else timezone.now())
    return (end - job.created_at).total_seconds() if end else None


@register.simple_tag
def poll_query(ids) -> str:
    """The query string naming the jobs a live fragment refreshes: id=…&id=…"""
    from urllib.parse import urlencode

    return urlencode([("id", value) for value in ids])
