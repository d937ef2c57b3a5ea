"""Template filters for the jobs pages: times in the user's zone with the zone named, durations, JSON."""

from __future__ import annotations

import html
import json
import uuid as uuid_lib
from datetime import UTC, datetime

from django import template
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.safestring import SafeData, SafeString, mark_safe

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


def render_html(pattern: str, **values) -> SafeString:
    """`pattern` (markup of ours, with `{name}` slots) with its slots filled: every value is escaped as text,
    except a SafeString, which is markup already (another render_html's, or a constant of ours). The one place
    history rows become markup, so that no value reaches a page unescaped by forgetting to escape it."""
    filled = {name: value if isinstance(value, SafeData) else _escape(value) for name, value in values.items()}
    return mark_safe(pattern.format_map(filled))  # noqa: S308 - every value escaped above unless already markup


_URL_MARK = str(uuid_lib.UUID(int=0))
_detail_urls: dict[str, tuple[str, str]] = {}


def _detail_url(job_uuid) -> str:
    """reverse("jobs:detail", args=[job_uuid]), resolved once per script prefix rather than once per row."""
    prefix = get_script_prefix()
    parts = _detail_urls.get(prefix)
    if parts is None:
        before, _, after = reverse("jobs:detail", args=[_URL_MARK]).partition(_URL_MARK)
        parts = _detail_urls[prefix] = (before, after)
    return f"{parts[0]}{job_uuid}{parts[1]}"


_STATE_LABELS = dict(JobState.choices)
_KIND_LABELS = dict(JobKind.choices)
_HISTORY_ROW = (
    '<tr id="job-{id}" data-state="{state}"{swap}>\n'
    '  <td><span class="badge state-{state}">{state_label}</span></td>\n'
    '  <td><a class="mono" href="{url}" title="{id}">{short_id}</a></td>\n'
    "  <td>{kind}</td>\n"
    '  <td class="mono">{script}{script_owner}</td>\n'
    "  <td>{owner}</td>\n"
    "  <td>{connection}</td>\n"
    '  <td class="nowrap"><time datetime="{iso}">{local} {zone}</time></td>\n'
    '  <td class="num nowrap">{duration}</td>\n'
    "</tr>\n"
)
_SCRIPT_OWNER = ' <span class="muted">({owner})</span>'
_SO_FAR = '<span class="muted">{elapsed} so far</span>'
_OOB = SafeString(' hx-swap-oob="true"')


@register.simple_tag
def history_row(job, oob: bool = False) -> SafeString:
    """One row of the history table (a selectors.HistoryRow), also sent alone by the live refresh (`oob`:
    swapped in by id).

    Built by render_html rather than by an included template: a page has 50 of them, and the include cost more
    than all the rest of the page.
    """
    job_id = str(job.uuid)
    elapsed = seconds(job_elapsed(job))
    tz = timezone.get_current_timezone()
    local = job.created_at.astimezone(tz)
    return render_html(
        _HISTORY_ROW,
        id=job_id,
        short_id=job_id[:8],
        url=_detail_url(job_id),
        swap=_OOB if oob else "",
        state=job.state,
        state_label=_STATE_LABELS.get(job.state, job.state),
        kind=_KIND_LABELS.get(job.kind, job.kind),
        script=job.script_name,
        script_owner=render_html(_SCRIPT_OWNER, owner=job.script_owner) if job.script_owner else "",
        owner=job.owner_name,
        connection=job.connection_name,
        iso=local.isoformat(),
        local=f"{local:%Y-%m-%d %H:%M:%S}",
        zone=local.tzname() or str(tz),
        duration=elapsed if job.is_terminal else render_html(_SO_FAR, elapsed=elapsed),
    )
