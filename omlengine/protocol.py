"""The request side of OML's protocol: what an execution POST may carry, validated into an `Execution`.

Everything a client can get wrong is refused here with a 400 and a message naming the field, before any
state changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from . import jsonbody
from .errors import bad_request

KINDS = ("do-eval", "table-apply", "row-apply", "group-apply", "index-apply")
API_VERSIONS = ("v1", "v2")

# Most parallel executions per service level (OML's documented degrees; TP levels are v2 only and serial).
SERVICE_CONCURRENCY = {"LOW": 2, "MEDIUM": 4, "HIGH": 8, "TP": 1, "TPURGENT": 1}
V1_SERVICES = ("LOW", "MEDIUM", "HIGH")

TIMEOUT_MIN, TIMEOUT_MAX, TIMEOUT_DEFAULT = 1800, 43200, 1800
INPUT_TYPES = ("pandas.DataFrame", "numpy.recarray", "default")


@dataclass
class Execution:
    """One validated call: which kind, on what input, with which arguments. Stored as JSON on async jobs."""

    kind: str
    input: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    input_type: str = "pandas.DataFrame"
    na_omit: bool = False
    rows: int | None = None
    group_by: list[str] = field(default_factory=list)
    order_by: list[str] = field(default_factory=list)
    times: int | None = None
    service: str = "LOW"
    async_flag: bool = False
    timeout: int = TIMEOUT_DEFAULT
    graphics: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Execution:
        return cls(**data)


def parse_execution(kind: str, api_version: str, raw_body: bytes) -> Execution:
    """Validate an execution POST's body for `kind`; raise a 400 EngineError naming what is wrong."""
    body = _json_object(raw_body)
    parameters = _parameters(body)
    execution = Execution(
        kind=kind,
        input=_optional(body, "input", str),
        kwargs={k: v for k, v in parameters.items() if not k.startswith("oml_")},
        input_type=_input_type(parameters),
        na_omit=_flag(parameters, "oml_na_omit"),
        rows=_positive_int(body, "rows"),
        group_by=_names(body, "groupBy"),
        order_by=_names(body, "orderBy"),
        times=_positive_int(body, "times"),
        service=_service(body, api_version),
        async_flag=_flag(body, "asyncFlag"),
        timeout=_timeout(body),
        graphics=_flag(body, "graphicsFlag"),
    )
    # Validated for the client's sake; the engine runs one job's calls in one process either way.
    _flag(body, "parallelFlag")
    _positive_int(body, "parallel")
    _require_kind_fields(execution)
    return execution


def _json_object(raw_body: bytes) -> dict[str, Any]:
    return jsonbody.object_from(raw_body)


def _parameters(body: dict[str, Any]) -> dict[str, Any]:
    """`parameters` (or Oracle's occasional singular `parameter`) is a string holding a JSON object."""
    key = "parameters" if "parameters" in body else "parameter"
    raw = body.get(key)
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, str):
        raise bad_request(f'"{key}" must be a string holding a JSON object, e.g. "{{\\"num\\": 10}}".')
    value = jsonbody.loads(raw, f'"{key}"')
    if not isinstance(value, dict):
        raise bad_request(f'"{key}" must hold a JSON object, not {type(value).__name__}.')
    return value


def _optional(body: dict[str, Any], key: str, kind: type) -> Any:
    value = body.get(key)
    if value is not None and not isinstance(value, kind):
        raise bad_request(f'"{key}" must be a {kind.__name__}.')
    return value


def _flag(data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise bad_request(f'"{key}" must be true or false.')
    return value


def _positive_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_request(f'"{key}" must be a positive integer.')
    return value


def _names(body: dict[str, Any], key: str) -> list[str]:
    value = _optional(body, key, str)
    return [name.strip() for name in value.split(",") if name.strip()] if value else []


def _input_type(parameters: dict[str, Any]) -> str:
    value = parameters.get("oml_input_type", "pandas.DataFrame")
    if value not in INPUT_TYPES:
        raise bad_request(f'"oml_input_type" must be one of {", ".join(INPUT_TYPES)}.')
    return value


def _service(body: dict[str, Any], api_version: str) -> str:
    value = _optional(body, "service", str) or "LOW"
    allowed = V1_SERVICES if api_version == "v1" else tuple(SERVICE_CONCURRENCY)
    if value.upper() not in allowed:
        raise bad_request(f'"service" must be one of {", ".join(allowed)}.')
    return value.upper()


def _timeout(body: dict[str, Any]) -> int:
    value = body.get("timeout")
    if value is None:
        return TIMEOUT_DEFAULT
    if isinstance(value, bool) or not isinstance(value, int) or not TIMEOUT_MIN <= value <= TIMEOUT_MAX:
        raise bad_request(f'"timeout" must be an integer number of seconds from {TIMEOUT_MIN} to {TIMEOUT_MAX}.')
    return value


def _require_kind_fields(execution: Execution) -> None:
    required = {
        "table-apply": ("input",),
        "row-apply": ("input", "rows"),
        "group-apply": ("input", "group_by"),
        "index-apply": ("times",),
    }.get(execution.kind, ())
    names = {"input": "input", "rows": "rows", "group_by": "groupBy", "times": "times"}
    for attr in required:
        if not getattr(execution, attr):
            raise bad_request(f'{execution.kind} needs "{names[attr]}".')
