"""What a job asks OML to do, validated once for every way in (the compose form and the JSON API).

`parse_job_request` takes plain data (field names as OML's body names, plus `connection`, `kind`, `script`,
`script_owner`) and returns a JobSpec, or raises ValidationError with a message per field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from django.core.exceptions import ValidationError

from . import access
from .models import Connection
from .states import JobKind, ServiceLevel

SCRIPT_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$#]{0,127}$")
COLUMN_LIST_RE = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_$#]*(\s*,\s*[A-Za-z_][A-Za-z0-9_$#]*)*\s*$")
TIMEOUT_MIN, TIMEOUT_MAX = 1800, 43200
MAX_TIMES = 100_000
MAX_ROWS = 10_000_000
MAX_PARALLEL = 64
MAX_INPUT_CHARS = 100_000
MAX_PARAMETERS_CHARS = 100_000

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

HELP = {
    "connection": "The OML service to run on; the default connection when empty.",
    "kind": "do-eval calls the function once; table-apply once on the whole input; row-apply once per chunk of "
    "rows; group-apply once per group; index-apply `times` times with index 1..times.",
    "script": "The name of a script registered in the OML script repository.",
    "script_owner": "The script's owner, for a script of another user; empty for your own or a global script.",
    "input": "SQL query whose result is passed to the function, e.g. select * from IRIS.",
    "parameters": 'Keyword arguments as a JSON object, e.g. {"oml_input_type": "pandas.DataFrame"}. Keys starting '
    "oml_ are control arguments: oml_input_type (pandas.DataFrame, numpy.recarray, default), oml_na_omit (bool).",
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


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _to_bool(value: Any, name: str, errors: dict) -> bool | None:
    if _blank(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "on", "yes"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "0", "off", "no"}:
        return False
    errors.setdefault(name, []).append("Must be true or false.")
    return None


def _to_int(value: Any, name: str, errors: dict, low: int, high: int) -> int | None:
    if _blank(value):
        return None
    if isinstance(value, bool):
        errors.setdefault(name, []).append("Must be a whole number.")
        return None
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        errors.setdefault(name, []).append("Must be a whole number.")
        return None
    if not low <= number <= high:
        errors.setdefault(name, []).append(f"Must be between {low} and {high}.")
        return None
    return number


def parse_parameters(value: Any) -> dict[str, Any]:
    """A JSON object given as a dict or as JSON text; raises ValueError with the position of a syntax error."""
    if _blank(value):
        return {}
    if isinstance(value, str):
        if len(value) > MAX_PARAMETERS_CHARS:
            raise ValueError(f"At most {MAX_PARAMETERS_CHARS} characters.")
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"Invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}.") from exc
    if not isinstance(value, dict):
        raise ValueError('Must be a JSON object, e.g. {"n": 10}.')
    return value


def _resolve_connection(value: Any, errors: dict, user) -> Connection | None:
    if _blank(value):
        connection = Connection.default()
        if connection is None:
            errors.setdefault("connection", []).append("No default connection is configured; choose one.")
        elif user is not None and not access.may_use_connection(user, connection.pk):
            errors.setdefault("connection", []).append(
                "The default connection is not granted to your teams; choose a connection."
            )
            return None
        return connection
    text = str(value)
    if "\x00" in text:
        errors.setdefault("connection", []).append("Must not contain NUL characters.")
        return None
    # Digits are an id (within the 64-bit range the database stores), anything else a name.
    is_id = text.isascii() and text.isdigit() and int(text) < 2**63
    lookup = {"pk": int(text)} if is_id else {"name": text}
    connection = Connection.objects.filter(**lookup).first()
    if connection is None:
        errors.setdefault("connection", []).append(f"Unknown connection {value!r}.")
    elif user is not None and (refusal := access.connection_refusal(user, connection)):
        raise refusal
    return connection


def parse_job_request(data: Mapping[str, Any], *, user=None) -> JobSpec:
    """Validate a job request; raise ValidationError({field: [messages]}) naming every problem at once.

    With `user`, the connection must be one the user may submit to: a connection named explicitly that is not
    raises jobs.access.ConnectionDenied (a 403), the default one that is not is a field error.
    """
    errors: dict[str, list[str]] = {}
    unknown = set(data) - ALL_BODY_FIELDS - {"connection", "kind", "script", "script_owner"}
    for name in sorted(unknown):
        errors.setdefault(name, []).append("Unknown field.")
    # PostgreSQL stores no NUL character in text or JSON.
    for name in sorted(set(data) - unknown - {"connection"}):
        value = data[name]
        text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, dict | list) else ""
        if "\x00" in text or "\\u0000" in text:
            errors.setdefault(name, []).append("Must not contain NUL characters.")

    connection = _resolve_connection(data.get("connection"), errors, user)
    kind = str(data.get("kind") or "").strip().replace("-", "_")
    if kind not in JobKind.values:
        errors.setdefault("kind", []).append(f"Choose one of: {', '.join(JobKind.values)}.")
        kind = ""

    script = str(data.get("script") or "").strip()
    if not script:
        errors.setdefault("script", []).append("Choose a script.")
    elif not SCRIPT_NAME_RE.match(script):
        errors.setdefault("script", []).append("Not a valid script name (letters, digits, _ $ #; at most 128).")
    script_owner = str(data.get("script_owner") or "").strip()
    if script_owner and not SCRIPT_NAME_RE.match(script_owner):
        errors.setdefault("script_owner", []).append("Not a valid owner name.")

    if kind:
        given = {name for name in ALL_BODY_FIELDS - COMMON_FIELDS if not _blank(data.get(name))}
        for name in sorted(given - KIND_FIELDS[kind]):
            errors.setdefault(name, []).append(f"Not used by {JobKind(kind).label} calls.")
        for name in sorted(REQUIRED_FIELDS[kind] - given):
            errors.setdefault(name, []).append(f"Required for {JobKind(kind).label} calls.")

    input_sql = str(data.get("input") or "").strip()
    if len(input_sql) > MAX_INPUT_CHARS:
        errors.setdefault("input", []).append(f"At most {MAX_INPUT_CHARS} characters.")
    try:
        parameters = parse_parameters(data.get("parameters"))
    except ValueError as exc:
        errors.setdefault("parameters", []).append(str(exc))
        parameters = {}

    group_by = str(data.get("groupBy") or "").strip()
    order_by = str(data.get("orderBy") or "").strip()
    for name, value in (("groupBy", group_by), ("orderBy", order_by)):
        if value and not COLUMN_LIST_RE.match(value):
            errors.setdefault(name, []).append("Comma-separated column names, e.g. SPECIES,PETAL_WIDTH.")

    rows = _to_int(data.get("rows"), "rows", errors, 1, MAX_ROWS)
    times = _to_int(data.get("times"), "times", errors, 1, MAX_TIMES)
    parallel = _to_int(data.get("parallel"), "parallel", errors, 1, MAX_PARALLEL)
    parallel_flag = _to_bool(data.get("parallelFlag"), "parallelFlag", errors)
    async_flag = _to_bool(data.get("asyncFlag"), "asyncFlag", errors)
    async_flag = True if async_flag is None else async_flag
    graphics_flag = bool(_to_bool(data.get("graphicsFlag"), "graphicsFlag", errors))
    timeout = _to_int(data.get("timeout"), "timeout", errors, TIMEOUT_MIN, TIMEOUT_MAX)
    if timeout is not None and not async_flag:
        errors.setdefault("timeout", []).append("Only asynchronous jobs take a timeout.")

    service = str(data.get("service") or "").strip().upper()
    if service and service not in ServiceLevel.values:
        errors.setdefault("service", []).append(f"Choose one of: {', '.join(ServiceLevel.values)}.")
    elif service in {ServiceLevel.TP, ServiceLevel.TPURGENT} and connection and connection.api_version == "v1":
        errors.setdefault("service", []).append(f"{service} needs a v2 connection.")

    env_name = str(data.get("envName") or "").strip()
    if len(env_name) > 128:
        errors.setdefault("envName", []).append("At most 128 characters.")

    if errors:
        raise ValidationError(errors)
    assert connection is not None
    return JobSpec(
        connection=connection,
        kind=kind,
        script_name=script,
        script_owner=script_owner,
        input_sql=input_sql,
        parameters=parameters,
        rows=rows,
        group_by=group_by,
        order_by=order_by,
        times=times,
        parallel_flag=parallel_flag,
        parallel=parallel,
        service=service,
        async_flag=async_flag,
        timeout=timeout,
        graphics_flag=graphics_flag,
        env_name=env_name,
    )


def spec_as_request(job) -> dict[str, Any]:
    """A job's request in the same field names parse_job_request takes (for clones, re-runs and the API)."""
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
    return data
