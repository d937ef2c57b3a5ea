"""What a job asks OML to do, validated once for every way in (the compose form and the JSON API).

`parse_job_request` takes plain data (field names as OML's body names, plus `connection`, `kind`, `script`,
`script_owner`) and returns a JobSpec, or raises ValidationError with a message per field. The limits below
(sizes, nesting, names, ranges) are the only ones: the API's OpenAPI document is drawn from them
(jobs.api.schema), and the API's body reader applies MAX_PARAMETERS_DEPTH before parsing.

Values come in one of two encodings, with the same rules and messages: JSON (the API, re-runs and clones:
numbers, booleans and objects as themselves; null is the same as absent) or form text (`form=True`: every
value the string that was typed, `parameters` as JSON text).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from django.core.exceptions import ValidationError

from jobs.models import Connection, Job
from jobs.selectors import access
from jobs.services import jsontext
from jobs.states import JobKind, ServiceLevel

# ECMA-262 and Python read these patterns alike; they are matched whole (fullmatch) and published as `^...$`.
NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_$#]{0,127}"
_COLUMN = r"[A-Za-z_][A-Za-z0-9_$#]*"
COLUMN_LIST_PATTERN = rf" *{_COLUMN} *(?:, *{_COLUMN} *)*"
NAME_RE = re.compile(NAME_PATTERN)
COLUMN_LIST_RE = re.compile(COLUMN_LIST_PATTERN)
# What counts as blank text: the same few characters for the validator and the published patterns.
BLANK = " \t\n\r\f\v"

TIMEOUT_MIN, TIMEOUT_MAX = 1800, 43200
MAX_TIMES = 100_000
MAX_ROWS = 10_000_000
MAX_PARALLEL = 64
MAX_INPUT_CHARS = 100_000
# Compact JSON text of the parameters object (as typed, for the form), and how deep its containers nest.
MAX_PARAMETERS_CHARS = 100_000
MAX_PARAMETERS_DEPTH = 32
# The columns' own sizes.
MAX_COLUMNS_CHARS = Job._meta.get_field("group_by").max_length
MAX_ENV_NAME_CHARS = Job._meta.get_field("env_name").max_length
MAX_CONNECTION_NAME_CHARS = Connection._meta.get_field("name").max_length
# The largest id the database stores (64-bit).
MAX_ID = 2**63 - 1

# Which body fields each kind of call takes (OML_API.md, "Request body").
KIND_FIELDS: dict[str, frozenset[str]] = {
    JobKind.DO_EVAL: frozenset(),
    JobKind.TABLE_APPLY: frozenset({"input", "parallelFlag"}),
    JobKind.ROW_APPLY: frozenset({"input", "rows", "parallelFlag", "parallel"}),
    JobKind.GROUP_APPLY: frozenset({"input", "groupBy", "orderBy", "parallelFlag", "parallel"}),
    JobKind.INDEX_APPLY: frozenset({"times", "parallelFlag", "parallel"}),
}
REQUIRED_FIELDS: dict[str, frozenset[str]] = {
    JobKind.DO_EVAL: frozenset(),
    JobKind.TABLE_APPLY: frozenset({"input"}),
    JobKind.ROW_APPLY: frozenset({"input", "rows"}),
    JobKind.GROUP_APPLY: frozenset({"input", "groupBy"}),
    JobKind.INDEX_APPLY: frozenset({"times"}),
}
COMMON_FIELDS = frozenset({"parameters", "service", "asyncFlag", "timeout", "graphicsFlag", "envName"})
ALL_BODY_FIELDS = frozenset().union(*KIND_FIELDS.values(), COMMON_FIELDS)
REQUEST_FIELDS = frozenset({"connection", "kind", "script", "script_owner"}) | ALL_BODY_FIELDS
# OML's own spelling of a kind (its URL segment) is accepted too.
KIND_NAMES = {**{kind: kind for kind in JobKind.values}, **{JobKind(kind).path: kind for kind in JobKind.values}}
INTEGER_BOUNDS = {
    "rows": (1, MAX_ROWS),
    "times": (1, MAX_TIMES),
    "parallel": (1, MAX_PARALLEL),
    "timeout": (TIMEOUT_MIN, TIMEOUT_MAX),
}
BOOLEAN_FIELDS = ("parallelFlag", "asyncFlag", "graphicsFlag")
TEXT_FIELDS = ("kind", "script", "script_owner", "input", "groupBy", "orderBy", "service", "envName")
TEXT_LIMITS = {
    "input": MAX_INPUT_CHARS,
    "groupBy": MAX_COLUMNS_CHARS,
    "orderBy": MAX_COLUMNS_CHARS,
    "envName": MAX_ENV_NAME_CHARS,
}

HELP = {
    "connection": "The OML service to run on; the default connection when empty.",
    "kind": "do-eval calls the function once; table-apply once on the whole input; row-apply once per chunk of "
    "rows; group-apply once per group; index-apply `times` times with index 1..times.",
    "script": "The name of a script registered in the OML script repository.",
    "script_owner": "The script's owner, for a script of another user; empty for your own or a global script.",
    "input": "SQL query whose result is passed to the function, e.g. select * from IRIS.",
    "parameters": 'Keyword arguments as a JSON object, e.g. {"oml_input_type": "pandas.DataFrame"}. Keys starting '
    "oml_ are control arguments: oml_input_type (pandas.DataFrame, numpy.recarray, default), oml_na_omit (bool). "
    f"At most {MAX_PARAMETERS_CHARS} characters, nested at most {MAX_PARAMETERS_DEPTH} levels.",
    "rows": "Row-apply: the most rows passed to one call.",
    "groupBy": "Group-apply: comma-separated columns to group by.",
    "orderBy": "Group-apply: comma-separated columns to order each group by.",
    "times": "Index-apply: how many times to call the function.",
    "parallelFlag": "Let OML run calls in parallel.",
    "parallel": "Preferred degree of parallelism.",
    "service": "Service level: LOW (default, up to 2 parallel), MEDIUM (4), HIGH (8); TP and TPURGENT on v2.",
    "asyncFlag": "Run as an asynchronous OML job (recommended for anything longer than a few seconds).",
    "timeout": f"Asynchronous jobs only: seconds OML lets the job run, {TIMEOUT_MIN} to {TIMEOUT_MAX}.",
    "graphicsFlag": "Capture the images the script draws.",
    "envName": "Conda environment to run in.",
}

TRUE_WORDS = frozenset({"true", "1", "on", "yes"})
FALSE_WORDS = frozenset({"false", "0", "off", "no"})
OBJECT_MESSAGE = 'Must be a JSON object, e.g. {"n": 10}.'


@dataclass
class JobSpec:
    connection: Connection
    kind: str
    script_name: str
    script_owner: str = ""
    input_sql: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    rows: int | None = None
    group_by: str = ""
    order_by: str = ""
    times: int | None = None
    parallel_flag: bool | None = None
    parallel: int | None = None
    service: str = ""
    async_flag: bool = True
    timeout: int | None = None
    graphics_flag: bool = False
    env_name: str = ""

    def model_fields(self) -> dict[str, Any]:
        """The Job columns this spec fills. Shallow: asdict() would deep-copy the connection and the parameters."""
        return {item.name: getattr(self, item.name) for item in fields(self)}


def is_blank(text: str) -> bool:
    return not text.strip(BLANK)


class _Errors(dict[str, list[str]]):
    """Messages by field; `missing` names the fields that refer to something that does not exist."""

    def __init__(self) -> None:
        super().__init__()
        self.missing: set[str] = set()

    def add(self, name: str, message: str, *, missing: bool = False) -> None:
        self.setdefault(name, []).append(message)
        if missing:
            self.missing.add(name)

    def raise_any(self) -> None:
        if self:
            raise ValidationError(
                {
                    name: [ValidationError(message, code=self.code(name)) for message in messages]
                    for name, messages in self.items()
                }
            )

    def code(self, name: str) -> str:
        return "not_found" if name in self.missing else "invalid"


def _from_form(data: Mapping[str, Any], errors: _Errors) -> dict[str, Any]:
    """Form text as the JSON values it stands for. Text that does not read as its field's type is left as it
    is, for the JSON rules to refuse with their own message; blank text is absent, as it is for a browser."""
    values: dict[str, Any] = {}
    for name, raw in data.items():
        text = raw.strip(BLANK) if isinstance(raw, str) else raw
        if text == "" or text is None:
            continue
        if isinstance(text, str) and name in INTEGER_BOUNDS:
            values[name] = _integer_text(text)
        elif isinstance(text, str) and name in BOOLEAN_FIELDS:
            word = text.lower()
            values[name] = True if word in TRUE_WORDS else False if word in FALSE_WORDS else text
        elif isinstance(text, str) and name == "connection":
            values[name] = _integer_text(text)
        elif isinstance(text, str) and name == "parameters":
            parsed = _parameters_text(text, errors)
            if parsed is not None:
                values[name] = parsed
        else:
            values[name] = text
    return values


def _integer_text(text: str) -> int | str:
    # int() of a few thousand digits is refused by Python itself; anything that long is out of range anyway.
    if text.isascii() and text.isdigit() and len(text) <= 20:
        return int(text)
    return text


def _parameters_text(text: str, errors: _Errors) -> Any:
    if len(text) > MAX_PARAMETERS_CHARS:
        errors.add("parameters", f"At most {MAX_PARAMETERS_CHARS} characters.")
        return None
    try:
        return jsontext.loads(text, max_depth=MAX_PARAMETERS_DEPTH)
    except jsontext.TooDeep as exc:
        errors.add("parameters", str(exc))
    except ValueError as exc:
        # Worded as the form's own check words it (jsontext.syntax_problem), so that one typo reads the same
        # under the field and in the preview.
        errors.add("parameters", jsontext.syntax_problem(text) or f"Invalid JSON: {exc}.")
    return None


def _check_parameters(value: Any, errors: _Errors) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.add("parameters", OBJECT_MESSAGE)
        return {}
    # Depth first: serializing a value nested thousands of levels deep would recurse as parsing it would.
    if jsontext.value_depth(value) > MAX_PARAMETERS_DEPTH:
        errors.add("parameters", str(jsontext.TooDeep(MAX_PARAMETERS_DEPTH, "parameters")))
        return {}
    problem = jsontext.value_problem(value)
    if problem is None and len(json.dumps(value, ensure_ascii=False, separators=(",", ":"))) > MAX_PARAMETERS_CHARS:
        problem = f"At most {MAX_PARAMETERS_CHARS} characters."
    if problem is not None:
        errors.add("parameters", problem)
        return {}
    return value


def _text(data: Mapping[str, Any], name: str, errors: _Errors) -> str | None:
    """A text field: None when absent, its string otherwise; other types and text no database stores refused."""
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        errors.add(name, "Must be text.")
        return None
    problem = jsontext.value_problem(value)
    limit = TEXT_LIMITS.get(name)
    if problem is None and limit is not None and len(value) > limit:
        problem = f"At most {limit} characters."
    if problem is not None:
        errors.add(name, problem)
        return None
    return value


def _integer(data: Mapping[str, Any], name: str, errors: _Errors) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    low, high = INTEGER_BOUNDS[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors.add(name, f"Must be a whole number from {low} to {high}.")
        return None
    return value


def _boolean(data: Mapping[str, Any], name: str, errors: _Errors) -> bool | None:
    value = data.get(name)
    if value is None or isinstance(value, bool):
        return value
    errors.add(name, "Must be true or false.")
    return None


def _resolve_connection(value: Any, errors: _Errors, user) -> Connection | None:
    if value is None:
        connection = Connection.default()
        if connection is None:
            errors.add("connection", "No default connection is configured; choose one.")
        elif user is not None and not access.may_use_connection(user, connection.pk):
            errors.add("connection", "The default connection is not granted to your teams; choose a connection.")
            return None
        return connection
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        # Beyond the ids the database stores, nothing can match: not worth a query that would overflow.
        connection = Connection.objects.filter(pk=value).first() if 1 <= value <= MAX_ID else None
    elif isinstance(value, str):
        problem = jsontext.value_problem(value) or ("Must not be empty." if is_blank(value) else None)
        if problem is not None:
            errors.add("connection", problem)
            return None
        connection = Connection.objects.filter(name=value).first()
    else:
        errors.add("connection", "Must be a connection's id (a number) or its name (text).")
        return None
    if connection is None:
        errors.add("connection", f"Unknown connection {value!r}.", missing=True)
    elif user is not None and (refusal := access.connection_refusal(user, connection)):
        raise refusal
    return connection


def parse_job_request(data: Mapping[str, Any], *, form: bool = False, user=None) -> JobSpec:
    """Validate a job request; raise ValidationError({field: [messages]}) naming every problem at once.

    `form`: the values are the compose form's text (see the module's docstring). Messages of a field that
    names something that does not exist (the connection) carry the code "not_found"; all others "invalid".
    With `user`, the connection must be one the user may submit to: a connection named explicitly that is not
    raises jobs.selectors.access.ConnectionDenied (a 403), the default one that is not is a field error.
    """
    errors = _Errors()
    for name in sorted(set(data) - REQUEST_FIELDS):
        errors.add(name, "Unknown field.")
    values = _from_form(data, errors) if form else {k: v for k, v in data.items() if k in REQUEST_FIELDS}

    connection = _resolve_connection(values.get("connection"), errors, user)
    texts = {name: _text(values, name, errors) for name in TEXT_FIELDS}
    kind = KIND_NAMES.get(texts["kind"] or "", "")
    if not kind and "kind" not in errors:
        errors.add("kind", f"Choose one of: {', '.join(JobKind.values)}.")

    script = texts["script"] or ""
    if "script" in errors:
        pass
    elif is_blank(script):
        errors.add("script", "Choose a script.")
    elif not NAME_RE.fullmatch(script):
        errors.add("script", "Not a valid script name (letters, digits, _ $ #; at most 128).")
    script_owner = texts["script_owner"] or ""
    if script_owner and not NAME_RE.fullmatch(script_owner):
        errors.add("script_owner", "Not a valid owner name.")

    if kind:
        given = {name for name in ALL_BODY_FIELDS - COMMON_FIELDS if values.get(name) is not None}
        for name in sorted(given - KIND_FIELDS[kind]):
            errors.add(name, f"Not used by {JobKind(kind).label} calls.")
        present = {name for name in given if not (isinstance(values[name], str) and is_blank(values[name]))}
        for name in sorted(REQUIRED_FIELDS[kind] - present):
            if name not in errors:
                errors.add(name, f"Required for {JobKind(kind).label} calls.")

    parameters = {} if "parameters" in errors else _check_parameters(values.get("parameters"), errors)
    group_by, order_by = texts["groupBy"] or "", texts["orderBy"] or ""
    for name, value in (("groupBy", group_by), ("orderBy", order_by)):
        if value and name not in errors and not COLUMN_LIST_RE.fullmatch(value):
            errors.add(name, "Comma-separated column names, e.g. SPECIES,PETAL_WIDTH.")

    rows = _integer(values, "rows", errors)
    times = _integer(values, "times", errors)
    parallel = _integer(values, "parallel", errors)
    timeout = _integer(values, "timeout", errors)
    parallel_flag = _boolean(values, "parallelFlag", errors)
    async_flag = _boolean(values, "asyncFlag", errors)
    async_flag = True if async_flag is None else async_flag
    graphics_flag = bool(_boolean(values, "graphicsFlag", errors))
    if timeout is not None and not async_flag:
        errors.add("timeout", "Only asynchronous jobs take a timeout.")

    service = texts["service"]
    if service is not None and service not in ServiceLevel.values:
        errors.add("service", f"Choose one of: {', '.join(ServiceLevel.values)}.")
    elif service in {ServiceLevel.TP, ServiceLevel.TPURGENT} and connection and connection.api_version == "v1":
        errors.add("service", f"{service} needs a v2 connection.")

    errors.raise_any()
    assert connection is not None
    return JobSpec(
        connection=connection,
        kind=kind,
        script_name=script,
        script_owner=script_owner,
        input_sql=texts["input"] or "",
        parameters=parameters,
        rows=rows,
        group_by=group_by,
        order_by=order_by,
        times=times,
        parallel_flag=parallel_flag,
        parallel=parallel,
        service=service or "",
        async_flag=async_flag,
        timeout=timeout,
        graphics_flag=graphics_flag,
        env_name=texts["envName"] or "",
    )


def spec_as_request(job) -> dict[str, Any]:
    """A job's request in the JSON encoding parse_job_request takes (for clones and re-runs): only the fields
    that were set, so that a kind's unused fields stay absent."""
    data: dict[str, Any] = {
        "connection": job.connection_id,
        "kind": job.kind,
        "script": job.script_name,
        "script_owner": job.script_owner,
        "input": job.input_sql,
        "parameters": job.parameters,
        "rows": job.rows,
        "groupBy": job.group_by,
        "orderBy": job.order_by,
        "times": job.times,
        "parallelFlag": job.parallel_flag,
        "parallel": job.parallel,
        "service": job.service,
        "asyncFlag": job.async_flag,
        "timeout": job.timeout,
        "graphicsFlag": job.graphics_flag,
        "envName": job.env_name,
    }
    return {name: value for name, value in data.items() if value not in (None, "")}
