"""Template filters for the jobs pages: times in the user's zone with the zone named, durations, JSON."""

from __future__ import annotations

import html
import json
import uuid as uuid_lib
from datetime import UTC, datetime

from django import template
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from jobs.states import JobKind, JobState

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
def unix_zoned(value: float | None) -> str:
    """A unix time (the poll log's) in the active time zone, to the millisecond: "09:41:03.250 CET"."""
    if value is None:
        return ""
    try:
        moment = datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return ""
    local = timezone.localtime(moment)
    return f"{local.strftime('%Y-%m-%d %H:%M:%S')}.{local.microsecond // 1000:03d} {local.tzname()}"


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


def _escape(value) -> str:
    """django.utils.html.escape's replacements (& < > " '), without its lazy-string and safe-string wrapping,
    which cost more than the rest of a row."""
    return html.escape(str(value), quote=True)


_STATE_LABELS = {value: _escape(label) for value, label in JobState.choices}
_KIND_LABELS = {value: _escape(label) for value, label in JobKind.choices}
_URL_MARK = str(uuid_lib.UUID(int=0))
_detail_urls: dict[str, tuple[str, str]] = {}


def _detail_url(job_uuid) -> str:
    """reverse("jobs:detail", args=[job_uuid]), escaped for an attribute; resolved once per script prefix
    rather than once per row."""
    prefix = get_script_prefix()
    parts = _detail_urls.get(prefix)
    if parts is None:
        before, _, after = reverse("jobs:detail", args=[_URL_MARK]).partition(_URL_MARK)
        parts = _detail_urls[prefix] = (_escape(before), _escape(after))
    return f"{parts[0]}{job_uuid}{parts[1]}"


@register.simple_tag
def history_row(job, oob: bool = False) -> SafeString:
    """One row of the history table (a selectors.HistoryRow), also sent alone by the live refresh (`oob`:
    swapped in by id).

    Built in Python rather than by an included template: a page has 50 of them, and the include cost more
    than all the rest of the page.
    """
    esc = _escape
    job_id = str(job.uuid)
    # State and kind are CHECK-constrained to known values, whose labels are escaped once, below.
    state = job.state if job.state in _STATE_LABELS else esc(job.state)
    swap = ' hx-swap-oob="true"' if oob else ""
    owner = f' <span class="muted">({esc(job.script_owner)})</span>' if job.script_owner else ""
    elapsed = seconds(job_elapsed(job))
    duration = elapsed if job.is_terminal else f'<span class="muted">{elapsed} so far</span>'
    tz = timezone.get_current_timezone()
    local = job.created_at.astimezone(tz)
    return mark_safe(  # noqa: S308 - free text escaped; the rest is ours (labels, uuid, times, durations)
        f'<tr id="job-{job_id}" data-state="{state}"{swap}>\n'
        f'  <td><span class="badge state-{state}">{_STATE_LABELS.get(job.state) or esc(job.state)}</span></td>\n'
        f'  <td><a class="mono" href="{_detail_url(job_id)}" title="{job_id}">{job_id[:8]}</a></td>\n'
        f"  <td>{_KIND_LABELS.get(job.kind) or esc(job.kind)}</td>\n"
        f'  <td class="mono">{esc(job.script_name)}{owner}</td>\n'
        f"  <td>{esc(job.owner_name)}</td>\n"
        f"  <td>{esc(job.connection_name)}</td>\n"
        f'  <td class="nowrap"><time datetime="{local.isoformat()}">'
        f"{local:%Y-%m-%d %H:%M:%S} {esc(local.tzname() or str(tz))}</time></td>\n"
        f'  <td class="num nowrap">{duration}</td>\n'
        "</tr>\n"
    )
