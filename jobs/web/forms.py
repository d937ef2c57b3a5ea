"""Form plumbing for the pages. Validation of a job request is jobs.services.specs.parse_job_request, nothing else."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from typing import Any

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django.utils import timezone

from jobs.models import Connection
from jobs.selectors.access import visible_connections
from jobs.selectors.jobs import HistoryFilters
from jobs.services.specs import (
    ALL_BODY_FIELDS,
    COMMON_FIELDS,
    HELP,
    KIND_FIELDS,
    MAX_PARALLEL,
    MAX_ROWS,
    MAX_TIMES,
    REQUIRED_FIELDS,
    TIMEOUT_MAX,
    TIMEOUT_MIN,
)
from jobs.states import JobKind, JobState

# The compose form's field names: OML's body names plus what to call and where.
REQUEST_FIELDS = ("connection", "kind", "script", "script_owner", *sorted(ALL_BODY_FIELDS))
CHECKBOX_FIELDS = ("parallelFlag", "graphicsFlag")


def job_request_data(post) -> dict[str, Any]:
    """Every posted field but the CSRF token, as parse_job_request(form=True) takes them: a name the form does
    not have is refused by the validator, as the API refuses it.

    Hidden fields are disabled in the browser and so absent; an unchecked box is absent too (not sent to
    OML), except asyncFlag, which the form always posts: a hidden "false" followed by the checkbox's "true".
    """
    # QueryDict.get gives the last value: the checkbox's "true" wins over the hidden "false" before it.
    return {name: post.get(name) for name in post if name != "csrfmiddlewaretoken"}


FIELD_LABELS = {
    "connection": "Connection",
    "kind": "Call kind",
    "script": "Script",
    "script_owner": "Script owner",
    "input": "Input (SQL)",
    "parameters": "Parameters (JSON object)",
    "rows": "Rows per call",
    "groupBy": "Group by",
    "orderBy": "Order by",
    "times": "Times",
    "parallelFlag": "Parallel",
    "parallel": "Degree of parallelism",
    "service": "Service level",
    "asyncFlag": "Asynchronous",
    "timeout": "Timeout (seconds)",
    "graphicsFlag": "Capture graphics",
    "envName": "Conda environment",
}
# The body fields in the order the compose form shows them, with the widget each one uses.
BODY_FIELD_WIDGETS = (
    ("input", "sql"),
    ("parameters", "json"),
    ("rows", "number"),
    ("groupBy", "text"),
    ("orderBy", "text"),
    ("times", "number"),
    ("parallelFlag", "checkbox"),
    ("parallel", "number"),
    ("service", "select"),
    ("asyncFlag", "checkbox"),
    ("timeout", "number"),
    ("graphicsFlag", "checkbox"),
    ("envName", "text"),
)
NUMBER_BOUNDS = {
    "rows": (1, MAX_ROWS),
    "times": (1, MAX_TIMES),
    "parallel": (1, MAX_PARALLEL),
    "timeout": (TIMEOUT_MIN, TIMEOUT_MAX),
}


def compose_fields(values: dict[str, Any], errors: dict[str, list[str]]) -> list[dict[str, Any]]:
    """What the compose template needs to draw each body field: which kinds take it, which require it."""
    fields = []
    for name, widget in BODY_FIELD_WIDGETS:
        if name in COMMON_FIELDS:
            kinds = list(JobKind.values)
        else:
            kinds = [kind for kind in JobKind.values if name in KIND_FIELDS[kind]]
        low, high = NUMBER_BOUNDS.get(name, (None, None))
        fields.append(
            {
                "name": name,
                "label": FIELD_LABELS[name],
                "help": HELP.get(name, ""),
                "widget": widget,
                "kinds": " ".join(kinds),
                "required_kinds": " ".join(kind for kind in JobKind.values if name in REQUIRED_FIELDS[kind]),
                "value": values.get(name, ""),
                "checked": _truthy(values.get(name)),
                "errors": errors.get(name, []),
                "min": low,
                "max": high,
            }
        )
    return fields


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in {"true", "1", "on", "yes"}


def form_values(post) -> dict[str, Any]:
    """The posted compose form as values to draw it again (the last value of each field)."""
    return {name: post.get(name, "") for name in REQUEST_FIELDS if name in post}


def initial_from_request(spec: dict[str, Any]) -> dict[str, Any]:
    """jobs.services.specs.spec_as_request output as form values (strings; parameters as indented JSON)."""
    import json

    values: dict[str, Any] = {}
    for name, value in spec.items():
        if value is None:
            continue
        if name == "parameters":
            values[name] = json.dumps(value, indent=2) if value else ""
        elif isinstance(value, bool):
            values[name] = value
        else:
            values[name] = str(value)
    return values


# A day filter becomes a moment in the user's time zone, and "to" the start of the day after: at either end of the
# calendar that moment does not exist (in UTC, or at all), so the first and the last day are refused.
FIRST_DAY, LAST_DAY = date(1, 1, 2), date(9999, 12, 30)
DAY_MESSAGE = f"Choose a day from {FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}."
DAY_BOUNDS = [MinValueValidator(FIRST_DAY, DAY_MESSAGE), MaxValueValidator(LAST_DAY, DAY_MESSAGE)]


class HistoryFilterForm(forms.Form):
    """The history page's filters, read from the query string. Dates are days in the user's time zone."""

    SORTS = (("newest", "Newest first"), ("oldest", "Oldest first"), ("longest", "Longest first"))

    q = forms.CharField(required=False, max_length=200, label="Search")
    state = forms.MultipleChoiceField(required=False, choices=JobState.choices)
    kind = forms.MultipleChoiceField(required=False, choices=JobKind.choices)
    script = forms.CharField(required=False, max_length=128)
    owner = forms.CharField(required=False, max_length=150)
    connection = forms.ModelChoiceField(required=False, queryset=Connection.objects.all(), empty_label="Any")
    created_from = forms.DateField(required=False, label="Created from", validators=DAY_BOUNDS)
    created_to = forms.DateField(required=False, label="Created to", validators=DAY_BOUNDS)
    sort = forms.ChoiceField(required=False, choices=SORTS)
    pinned = forms.BooleanField(required=False, label="Pinned only")

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        if user is not None:
            # Only the connections granted to the user's teams are offered (and accepted) as a filter.
            self.fields["connection"].queryset = visible_connections(user)

    def filters(self) -> HistoryFilters:
        data = self.cleaned_data if self.is_valid() else {}
        return HistoryFilters(
            state=list(data.get("state") or []),
            kind=list(data.get("kind") or []),
            script=(data.get("script") or "").strip(),
            owner=(data.get("owner") or "").strip(),
            connection=data["connection"].pk if data.get("connection") else None,
            created_from=_start_of_day(data.get("created_from")),
            created_to=_start_of_day(data["created_to"] + timedelta(days=1)) if data.get("created_to") else None,
            search=(data.get("q") or "").strip(),
            pinned=bool(data.get("pinned")),
        )

    def chips(self, name: str) -> list[tuple[str, str, bool]]:
        """The state or kind checkboxes as (value, label, checked), so that the page looks nothing up per chip
        (on an unbound form, `form.cleaned_data` fails once per chip inside the template engine)."""
        chosen = set(self.cleaned_data.get(name) or ()) if self.is_valid() else set()
        return [(value, label, value in chosen) for value, label in self.fields[name].choices]

    def connection_choices(self) -> list[dict]:
        """The connection filter's options, the chosen one marked; the page writes the select itself (the
        widget's template rendering cost a tenth of the page)."""
        chosen = str(self.data.get("connection") or "")
        return [
            {"pk": pk, "name": name, "selected": str(pk) == chosen}
            for pk, name in self.fields["connection"].queryset.order_by("name").values_list("pk", "name")
        ]

    def sort_order(self) -> str:
        return (self.cleaned_data.get("sort") if self.is_valid() else "") or "newest"

    def more_filters_in_use(self) -> int:
        """How many of the filters beyond search and sort are in use (the page opens them when any is)."""
        if not self.is_valid():
            return sum(1 for name in self.data if name not in {"q", "sort", "after", "before"} and self.data.get(name))
        return sum(1 for name, value in self.cleaned_data.items() if name not in {"q", "sort"} and value)

    def is_filtered(self) -> bool:
        return self.is_valid() and any(value for name, value in self.cleaned_data.items() if name != "sort")


def _start_of_day(day) -> datetime | None:
    if day is None:
        return None
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_current_timezone())


def parse_uuids(values: list[str], limit: int = 200) -> list[uuid.UUID]:
    keys = []
    for value in values[:limit]:
        try:
            keys.append(uuid.UUID(value))
        except ValueError:
            continue
    return keys
