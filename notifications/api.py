"""/api/v1/notification-rules: list, create, read, replace and delete notification rules (mounted on the
jobs API by NotificationsConfig.ready). Thin: notifications.services writes, notifications.selectors reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from ninja import Path, Router, Schema, Status

from jobs.api.schema import refusals, request_object
from jobs.models import JobKind
from jobs.services import jsontext
from jobs.services.specs import MAX_ID

from . import selectors, services
from .models import RULE_EVENTS, Channel, NotificationRule
from .services import FACTOR_MAX, MINUTES_MAX
from .targets import EMAIL_PATTERN, URL_PATTERN, apprise_pattern

router = Router(tags=["notifications"])

NO_NUL = "^[^\\u0000]*$"
EMAIL, URL, APPRISE = EMAIL_PATTERN, URL_PATTERN, apprise_pattern()
TARGET_MAX = 2000

_COMMON = {
    "events": {
        "type": "array",
        "items": {"type": "string", "enum": list(RULE_EVENTS)},
        "minItems": 1,
        "maxItems": len(RULE_EVENTS),
        "uniqueItems": True,
    },
    "scope": {"type": "string", "enum": ["mine", "team"], "default": "mine"},
    "team": {
        "anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_ID}, {"type": "null"}],
        "description": "For a team rule: the id of a team you lead (needed when you lead several). Ignored for `mine`.",
    },
    "name": {"type": "string", "maxLength": 100, "pattern": NO_NUL},
    "script": {"type": "string", "maxLength": 128, "pattern": NO_NUL, "description": "Only this script's jobs."},
    "connection": {
        "anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_ID}, {"type": "null"}],
        "description": "Only jobs on this connection (its id).",
    },
    "kind": {"type": "string", "enum": ["", *JobKind.values]},
    "factor": {"type": "number", "minimum": 1, "maximum": FACTOR_MAX, "default": 1.5},
    "minutes": {"type": "integer", "minimum": 1, "maximum": MINUTES_MAX, "default": 60},
    "stuck_minutes": {"type": "integer", "minimum": 1, "maximum": MINUTES_MAX, "default": 15},
    "format": {"type": "string", "enum": ["json", "slack"], "default": "json"},
    "enabled": {"type": "boolean", "default": True},
    "channel": {"type": "string", "enum": list(Channel.values)},
    "target": {
        "type": "string",
        "maxLength": TARGET_MAX,
        "description": "email: an address; webhook: an http(s) URL; apprise: an Apprise URL of an allowed service; "
        "inapp: none. Surrounding blanks are ignored.",
    },
}


def _branch(channel: str, target: dict[str, Any] | None) -> dict[str, Any]:
    properties: dict[str, Any] = {"channel": {"const": channel}}
    if target is None:
        properties["target"] = {"const": ""}
        return {"properties": properties, "required": ["channel"]}
    properties["target"] = {"type": "string", "maxLength": TARGET_MAX, **target}
    return {"properties": properties, "required": ["channel", "target"]}


RULE_BODY = {
    "type": "object",
    "properties": _COMMON,
    "required": ["events", "channel"],
    "additionalProperties": False,
    "oneOf": [
        _branch("email", {"pattern": EMAIL}),
        _branch("webhook", {"pattern": URL}),
        _branch("apprise", {"pattern": APPRISE}),
        _branch("inapp", None),
    ],
}
BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": RULE_BODY}}}}


class RuleOut(Schema):
    id: int
    name: str
    owner: str
    scope: str
    team: int | None
    events: list[str]
    script: str
    connection: int | None
    kind: str
    factor: float
    minutes: int
    stuck_minutes: int
    channel: str
    target_hint: str
    format: str
    enabled: bool
    created_at: datetime
    updated_at: datetime


class RuleCreated(RuleOut):
    secret: str | None


def _hint(rule: NotificationRule) -> str:
    """Enough of the target to recognise it; the rest is a secret (a webhook URL's path often is a token)."""
    target = rule.target
    if rule.channel == Channel.EMAIL:
        return target
    if rule.channel == Channel.WEBHOOK:
        parts = urlsplit(target)
        return f"{parts.scheme}://{parts.hostname}/..."
    if rule.channel == Channel.APPRISE:
        return target.split("://", 1)[0] + "://..."
    return ""


def _out(rule: NotificationRule) -> dict[str, Any]:
    return {
        "id": rule.pk,
        "name": rule.name,
        "owner": rule.owner.get_username(),
        "scope": rule.scope,
        "team": rule.team_id,
        "events": rule.events,
        "script": rule.script,
        "connection": rule.connection_id,
        "kind": rule.kind,
        "factor": rule.factor,
        "minutes": rule.minutes,
        "stuck_minutes": rule.stuck_minutes,
        "channel": rule.channel,
        "target_hint": _hint(rule),
        "format": rule.format,
        "enabled": rule.enabled,
        "created_at": rule.created_at,
        "updated_at": rule.updated_at,
    }


def _input(request) -> services.RuleInput:
    """The body as RULE_BODY publishes it; anything else is a 400 naming the member."""
    body = request_object(request)
    errors: dict[str, list[str]] = {name: ["Unknown field."] for name in sorted(set(body) - set(_COMMON))}

    def text(name: str, limit: int) -> str:
        value = body.get(name, "")
        if not isinstance(value, str) or len(value) > limit:
            errors[name] = [f"Text of at most {limit} characters."]
            return ""
        if problem := jsontext.value_problem(value):
            errors[name] = [problem]
        return value

    def integer(name: str, default: int | None, low: int, high: int) -> int | None:
        value = body.get(name, default)
        if value is None and default is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON has one number type: 7.0 is the integer 7
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            errors[name] = [f"A whole number from {low} to {high}."]
            return default
        return value

    events = body.get("events")
    if not isinstance(events, list) or not events or any(not isinstance(event, str) for event in events):
        errors["events"] = [f"A list of one or more of {', '.join(RULE_EVENTS)}."]
        events = []
    elif len(set(events)) != len(events):
        errors["events"] = ["Each event once."]
    factor = body.get("factor", 1.5)
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not 1 <= factor <= FACTOR_MAX:
        errors["factor"] = [f"A number from 1 to {FACTOR_MAX:g}."]
        factor = 1.5
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        errors["enabled"] = ["true or false."]
    for name, allowed in (("scope", ("mine", "team")), ("format", ("json", "slack")), ("channel", Channel.values)):
        if name in body and body[name] not in allowed:
            errors[name] = [f"One of {', '.join(allowed)}."]
    kind = text("kind", 20)
    if kind and kind not in JobKind.values:
        errors["kind"] = [f"One of {', '.join(JobKind.values)}, or empty."]
    data = services.RuleInput(
        events=events,
        channel=str(body.get("channel", "")),
        target=text("target", TARGET_MAX),
        scope=str(body.get("scope", "mine")),
        team=integer("team", None, 1, MAX_ID),
        name=text("name", 100),
        script=text("script", 128),
        connection=integer("connection", None, 1, MAX_ID),
        kind=kind,
        factor=float(factor),
        minutes=integer("minutes", 60, 1, MINUTES_MAX) or 60,
        stuck_minutes=integer("stuck_minutes", 15, 1, MINUTES_MAX) or 15,
        format=str(body.get("format", "json")),
        enabled=enabled is True,
    )
    if "channel" not in body:
        errors["channel"] = ["Required."]
    if errors:
        raise ValidationError(errors)
    if data.scope == "mine":
        data.team = None
    return data


@router.get("", response={200: list[RuleOut], **refusals()}, summary="The notification rules you see")
def list_rules(request):
    return [_out(rule) for rule in selectors.visible_rules(request.user)[:200]]


@router.post(
    "",
    response={201: RuleCreated, **refusals(400, 403, 404, 413)},
    summary="Create a notification rule",
    description="A webhook rule's signing `secret` is in this answer only: webhooks carry "
    '`X-OMLPy-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "{t}.{body}">`. 403: you may not make this rule '
    "(auditors; a team you do not lead) or its target resolves to an address inside the network.",
    openapi_extra=BODY,
)
def create_rule(request):
    rule, secret = services.rule_create(user=request.user, data=_input(request), request=request)
    return Status(201, {**_out(rule), "secret": secret or None})


def _rule(request, rule_id: int) -> NotificationRule:
    return selectors.rule_for_user(request.user, rule_id)


@router.get("/{rule_id}", response={200: RuleOut, **refusals(400, 404)}, summary="One notification rule")
def read_rule(request, rule_id: int = Path(..., ge=1, le=MAX_ID)):
    return _out(_rule(request, rule_id))


@router.put(
    "/{rule_id}",
    response={200: RuleOut, **refusals(400, 403, 404, 413)},
    summary="Replace a notification rule",
    openapi_extra=BODY,
)
def replace_rule(request, rule_id: int = Path(..., ge=1, le=MAX_ID)):
    rule = _rule(request, rule_id)
    services.rule_update(user=request.user, rule=rule, data=_input(request), request=request)
    return _out(_rule(request, rule_id))


@router.delete("/{rule_id}", response={204: None, **refusals(400, 403, 404)}, summary="Delete a notification rule")
def delete_rule(request, rule_id: int = Path(..., ge=1, le=MAX_ID)):
    services.rule_delete(user=request.user, rule=_rule(request, rule_id), request=request)
    return Status(204, None)
