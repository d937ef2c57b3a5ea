"""The JSON API's requests and refusals: the job request's body, the job list's query, the error answer.

The job request's JSON Schema (POST /api/v1/jobs) is drawn from jobs.services.specs so that the document and the
validator cannot disagree: a request the schema admits is one parse_job_request accepts, except for what no
schema can say (a connection that does not exist answers 404; parameters longer than MAX_PARAMETERS_CHARS
as JSON text or nested deeper than MAX_PARAMETERS_DEPTH, or a TP service level on a v1 connection, answer
400), and a request it refuses is refused.

One branch per call kind and per mode: an asynchronous call may name a timeout, a synchronous one may not.
`null` is the same as leaving a field out. Patterns are written so that ECMA-262 and Python read them alike.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Field, Schema
from pydantic import field_validator

from jobs.selectors import jobs as selectors
from jobs.services import jsontext, specs
from jobs.states import JobKind, JobState, ServiceLevel

# Text with no NUL character, and text with at least one character that is not blank as well.
NO_NUL = "^[^\\u0000]*$"
NOT_BLANK = "^[^\\u0000]*[^\\u0000 \\t\\n\\r\\f\\v][^\\u0000]*$"
JSON_VALUE = "JSONValue"
JSON_VALUE_REF = {"$ref": f"#/components/schemas/{JSON_VALUE}"}
NULL = {"type": "null"}
# A date-time as RFC 3339 writes it (with its offset); Python would read far more shapes than the document says.
RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def components() -> dict[str, Any]:
    """Schemas the request body refers to, for the document's components."""
    return {
        JSON_VALUE: {
            "title": JSON_VALUE,
            "description": "Any JSON value whose strings hold no NUL character.",
            "anyOf": [
                {"type": "string", "pattern": NO_NUL},
                {"type": "number"},
                {"type": "boolean"},
                NULL,
                {"type": "array", "items": JSON_VALUE_REF},
                {"type": "object", "propertyNames": {"pattern": NO_NUL}, "additionalProperties": JSON_VALUE_REF},
            ],
        }
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, NULL]}


def _field_schemas() -> dict[str, dict[str, Any]]:
    """Each field's schema where it is used (and nullable where it may be left out)."""
    column_list = {"type": "string", "maxLength": specs.MAX_COLUMNS_CHARS}
    return {
        "connection": {
            "description": "Connection id or name; the default connection when left out.",
            "anyOf": [
                {"type": "integer"},
                {"type": "string", "pattern": NOT_BLANK, "maxLength": specs.MAX_CONNECTION_NAME_CHARS},
                NULL,
            ],
        },
        "script": {"type": "string", "pattern": f"^{specs.NAME_PATTERN}$", "description": specs.HELP["script"]},
        "script_owner": _nullable({"type": "string", "pattern": f"^(?:{specs.NAME_PATTERN})?$"}),
        "input": {"type": "string", "pattern": NOT_BLANK, "maxLength": specs.MAX_INPUT_CHARS},
        "parameters": {
            "description": f"{specs.HELP['parameters']} JSON text of an object is refused: send the object.",
            "anyOf": [
                {"type": "object", "propertyNames": {"pattern": NO_NUL}, "additionalProperties": JSON_VALUE_REF},
                NULL,
            ],
        },
        "groupBy": column_list | {"pattern": f"^{specs.COLUMN_LIST_PATTERN}$"},
        "orderBy": _nullable(column_list | {"pattern": f"^(?:{specs.COLUMN_LIST_PATTERN})?$"}),
        "service": _nullable({"enum": list(ServiceLevel.values)}),
        "envName": _nullable({"type": "string", "pattern": NO_NUL, "maxLength": specs.MAX_ENV_NAME_CHARS}),
        **{
            name: {"type": "integer", "minimum": low, "maximum": high}
            for name, (low, high) in specs.INTEGER_BOUNDS.items()
        },
        **{name: {"type": "boolean"} for name in specs.BOOLEAN_FIELDS},
    }


def _branch(kind: str, *, asynchronous: bool) -> dict[str, Any]:
    schemas = _field_schemas()
    label = JobKind(kind).label
    used = specs.KIND_FIELDS[kind] | specs.COMMON_FIELDS
    required = sorted(specs.REQUIRED_FIELDS[kind])
    properties: dict[str, Any] = {
        "connection": schemas["connection"],
        "kind": {"enum": [name for name, value in specs.KIND_NAMES.items() if value == kind]},
        "script": schemas["script"],
        "script_owner": schemas["script_owner"],
    }
    for name in sorted(specs.ALL_BODY_FIELDS):
        if name not in used:
            properties[name] = NULL
        elif name in required or "anyOf" in schemas[name]:
            properties[name] = schemas[name]
        else:
            properties[name] = _nullable(schemas[name])
    if asynchronous:
        properties["asyncFlag"] = {"enum": [True, None]}
    else:
        properties["asyncFlag"] = {"const": False}
        properties["timeout"] = NULL
        required.append("asyncFlag")
    for name, schema in properties.items():
        if name in specs.HELP and "description" not in schema and schema is not NULL:
            properties[name] = {**schema, "description": specs.HELP[name]}
    return {
        "title": f"{label}, {'asynchronous' if asynchronous else 'synchronous'}",
        "type": "object",
        "properties": properties,
        "required": ["kind", "script", *required],
        "additionalProperties": False,
    }


def job_request_schema() -> dict[str, Any]:
    return {
        "title": "JobRequest",
        "description": "What to run: OML's body fields plus the connection, the call kind and the script. A "
        "field a call kind does not use must be left out (or null); unknown fields are refused.",
        "oneOf": [
            _branch(kind, asynchronous=asynchronous) for kind in JobKind.values for asynchronous in (True, False)
        ],
    }


# --- Reading a job request ------------------------------------------------------------------------


class ErrorOut(Schema):
    detail: str = Field(..., description="What is wrong, in words.")
    errors: dict[str, list[str]] | None = Field(None, description="Messages by field, for a request not valid.")


def refusals(*statuses: int) -> dict[int, type[ErrorOut]]:
    """The error answers an operation may give, besides 401 (no credentials) and 503 (database down)."""
    return dict.fromkeys((*statuses, 401, 503), ErrorOut)


def request_object(request: HttpRequest) -> dict[str, Any]:
    """The body's JSON object. Each member may nest as deep as a job's parameters and no deeper, checked before
    parsing (which would otherwise recurse once per level), so that the message names the member."""
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError({"__all__": ["The request body must be JSON text in UTF-8."]}) from None
    try:
        # The body's own object is the first level: the limit is that of its members.
        body = jsontext.loads(text, max_depth=specs.MAX_PARAMETERS_DEPTH + 1)
    except jsontext.TooDeep as exc:
        message = str(jsontext.TooDeep(specs.MAX_PARAMETERS_DEPTH, exc.key))
        raise ValidationError({exc.key or "__all__": [message]}) from None
    except ValueError as exc:
        raise ValidationError({"__all__": [f"The request body is not valid JSON: {exc}."]}) from None
    if not isinstance(body, dict):
        raise ValidationError({"__all__": ["The request body must be a JSON object."]})
    return body


# --- The job list's query -----------------------------------------------------------------------


class HistoryQuery(Schema):
    """The history's filters as the API takes them (the job list and its export)."""

    state: list[JobState] = Field(default_factory=list)
    kind: list[JobKind] = Field(default_factory=list)
    script: str = Field("", json_schema_extra={"pattern": NO_NUL})
    owner: str = Field("", json_schema_extra={"pattern": NO_NUL})
    connection: int | None = Field(None, ge=1, le=specs.MAX_ID)
    created_from: datetime | None = Field(None, description="RFC 3339, with its offset.")
    created_to: datetime | None = Field(None, description="RFC 3339, with its offset.")
    q: str = Field(
        "",
        description="A job id, an OML job id or the start of a script name.",
        json_schema_extra={"pattern": NO_NUL},
    )
    pinned: bool = Field(False, description="Only pinned jobs.")

    def history(self) -> selectors.HistoryFilters:
        """The filters as the history page reads them: the list and its export select the same jobs."""
        return selectors.HistoryFilters(
            state=list(self.state),
            kind=list(self.kind),
            script=self.script,
            owner=self.owner,
            connection=self.connection,
            created_from=self.created_from,
            created_to=self.created_to,
            search=self.q,
            pinned=self.pinned,
        )

    @field_validator("script", "owner", "q")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        # PostgreSQL cannot compare text with a NUL character: refuse it here rather than fail in the query.
        if "\x00" in value:
            raise ValueError(jsontext.NUL_MESSAGE)
        return value

    @field_validator("created_from", "created_to", mode="before")
    @classmethod
    def _rfc3339(cls, value: object) -> object:
        if isinstance(value, str) and not RFC3339.fullmatch(value):
            raise ValueError("Must be a date-time with its offset (RFC 3339), e.g. 2026-01-31T09:00:00Z.")
        return value

    @field_validator("created_from", "created_to")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        # Sent to the database in UTC (PostgreSQL refuses offsets beyond 16 hours). An instant past either end
        # of the calendar once in UTC is read as that end, which selects the same jobs.
        if value is None:
            return value
        try:
            return value.astimezone(UTC)
        except OverflowError:
            return datetime.min.replace(tzinfo=UTC) if value.year == 1 else datetime.max.replace(tzinfo=UTC)


class ExportFilters(HistoryQuery):
    sort: Literal["newest", "oldest", "longest"] = Field(
        "newest",
        description="newest or oldest first (by creation), or longest first (created to finished; jobs still "
        "running come last).",
    )


class JobFilters(ExportFilters):
    cursor: str | None = Field(
        None,
        description="The `next_cursor` of the page before, as it came: the page after it.",
        json_schema_extra={"pattern": f"^{selectors.CURSOR_PATTERN}$"},
    )
    before: str | None = Field(
        None,
        description="The `prev_cursor` of the page after, as it came: the page before it (with the same sort).",
        json_schema_extra={"pattern": f"^{selectors.CURSOR_PATTERN}$"},
    )
    limit: int = Field(50, ge=1, le=selectors.MAX_PAGE)

    @field_validator("cursor", "before")
    @classmethod
    def _cursor(cls, value: str | None) -> str | None:
        if value is not None and not selectors.CURSOR_RE.fullmatch(value):
            raise ValueError("Not a cursor this list gave: pass `next_cursor` or `prev_cursor` as it came.")
        return value
