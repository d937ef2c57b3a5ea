"""Every write of notifications that users make: rules (audited) and marking in-app notifications read."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import Team
from audit.services import audit_record
from jobs.crypto import encrypt
from jobs.models import Connection, JobKind
from jobs.selectors import access

from .models import RULE_EVENTS, Channel, Notification, NotificationRule
from .targets import TargetRefused, target_check, target_problem

FACTOR_MAX = 100.0
MINUTES_MAX = 7 * 24 * 60


class TargetForbidden(PermissionDenied):
    """The target resolves to an address notifications may not be sent to (or cannot be checked)."""


@dataclass
class RuleInput:
    events: list[str]
    channel: str
    target: str = ""
    scope: str = NotificationRule.Scope.MINE
    team: int | None = None
    name: str = ""
    script: str = ""
    connection: int | None = None
    kind: str = ""
    factor: float = 1.5
    minutes: int = 60
    stuck_minutes: int = 15
    format: str = NotificationRule.Format.JSON
    enabled: bool = True
    errors: dict[str, list[str]] = field(default_factory=dict)


def rule_teams(user) -> list[Team]:
    """The teams whose rules `user` may make: the teams they lead (admins: every team)."""
    if access.is_admin(user):
        return list(Team.objects.order_by("name"))
    return list(Team.objects.filter(pk__in=sorted(access.lead_team_ids(user))).order_by("name"))


def can_make_rules(user) -> bool:
    """Anyone who submits jobs may make rules about their own; auditors change nothing."""
    return access.can_submit(user)


def _clean(user, data: RuleInput) -> tuple[dict[str, Any], Team | None, Connection | None]:
    errors: dict[str, list[str]] = {}
    events = list(dict.fromkeys(data.events or []))
    unknown = [event for event in events if event not in RULE_EVENTS]
    if not events or unknown:
        errors["events"] = [f"Pick one or more of {', '.join(RULE_EVENTS)}."]
    if data.channel not in Channel.values:
        errors["channel"] = [f"One of {', '.join(Channel.values)}."]
    elif problem := target_problem(data.channel, data.target):
        errors["target"] = [problem]
    if data.format not in NotificationRule.Format.values:
        errors["format"] = ["json or slack."]
    if not 1.0 <= data.factor <= FACTOR_MAX:
        errors["factor"] = [f"A number from 1 to {FACTOR_MAX:g}."]
    for name in ("minutes", "stuck_minutes"):
        if not 1 <= getattr(data, name) <= MINUTES_MAX:
            errors[name] = [f"Whole minutes from 1 to {MINUTES_MAX}."]
    if data.kind and data.kind not in JobKind.values:
        errors["kind"] = [f"One of {', '.join(JobKind.values)}, or blank."]
    if len(data.script) > 128 or len(data.name) > 100:
        errors["script" if len(data.script) > 128 else "name"] = ["Too long."]
    team = None
    if data.scope == NotificationRule.Scope.TEAM:
        allowed = {team.pk: team for team in rule_teams(user)}
        if not allowed:
            raise PermissionDenied("Only a team's leads and administrators make rules about the team's jobs.")
        if data.team is None:
            if len(allowed) == 1:
                team = next(iter(allowed.values()))
            else:
                errors["team"] = ["You lead several teams: name the one whose jobs the rule watches."]
        else:
            team = allowed.get(data.team)
            if team is None:
                raise PermissionDenied("Only a team's leads and administrators make rules about the team's jobs.")
    elif data.scope != NotificationRule.Scope.MINE:
        errors["scope"] = ["mine or team."]
    elif data.team is not None:
        errors["team"] = ["Only a team rule names a team."]
    connection = None
    if data.connection is not None:
        connection = access.connection_for_user(user, data.connection)  # 404 when not visible
    if errors:
        raise ValidationError(errors)
    return {"events": events}, team, connection


def _apply(rule: NotificationRule, user, data: RuleInput) -> str:
    # Surrounding blanks are no part of an address (a pattern's `$` also lets a final newline through).
    data.target = data.target.strip()
    cleaned, team, connection = _clean(user, data)
    if data.channel in (Channel.WEBHOOK, Channel.APPRISE):
        try:
            target_check(data.channel, data.target)
        except TargetRefused as exc:
            raise TargetForbidden(str(exc)) from None
    rule.name = data.name
    rule.scope = data.scope
    rule.team = team
    rule.events = cleaned["events"]
    rule.script = data.script
    rule.connection = connection
    rule.kind = data.kind
    rule.factor = data.factor
    rule.minutes = data.minutes
    rule.stuck_minutes = data.stuck_minutes
    rule.channel = data.channel
    rule.target_encrypted = encrypt(data.target) if data.target else ""
    rule.format = data.format
    rule.enabled = data.enabled
    secret = ""
    if data.channel == Channel.WEBHOOK and not rule.secret_encrypted:
        secret = secrets.token_urlsafe(32)
        rule.secret_encrypted = encrypt(secret)
    elif data.channel != Channel.WEBHOOK:
        rule.secret_encrypted = ""
    return secret


def _audit_details(rule: NotificationRule) -> dict[str, Any]:
    # Never the target or the secret: they are secrets.
    return {
        "events": rule.events,
        "channel": rule.channel,
        "scope": rule.scope,
        "team": rule.team.name if rule.team else "",
        "enabled": rule.enabled,
    }


def rule_create(*, user, data: RuleInput, request=None) -> tuple[NotificationRule, str]:
    """A new rule of `user`, and its webhook signing secret (shown once; empty for other channels)."""
    if not can_make_rules(user):
        raise PermissionDenied("Auditors review; they do not make notification rules.")
    rule = NotificationRule(owner=user)
    secret = _apply(rule, user, data)
    with transaction.atomic():
        rule.save()
        audit_record(
            action="rule_create",
            actor=user,
            request=request,
            target_type="rule",
            target_id=str(rule.pk),
            details=_audit_details(rule),
        )
    return rule, secret


def may_change_rule(user, rule: NotificationRule) -> bool:
    if not can_make_rules(user):
        return False
    if rule.owner_id == user.pk or access.is_admin(user):
        return True
    return rule.scope == NotificationRule.Scope.TEAM and rule.team_id in access.lead_team_ids(user)


def rule_update(*, user, rule: NotificationRule, data: RuleInput, request=None) -> NotificationRule:
    if not may_change_rule(user, rule):
        raise PermissionDenied("Only the rule's owner, the team's leads and administrators change it.")
    _apply(rule, user, data)
    with transaction.atomic():
        rule.save()
        audit_record(
            action="rule_update",
            actor=user,
            request=request,
            target_type="rule",
            target_id=str(rule.pk),
            details=_audit_details(rule),
        )
    return rule


def rule_delete(*, user, rule: NotificationRule, request=None) -> None:
    if not may_change_rule(user, rule):
        raise PermissionDenied("Only the rule's owner, the team's leads and administrators delete it.")
    with transaction.atomic():
        audit_record(
            action="rule_delete",
            actor=user,
            request=request,
            target_type="rule",
            target_id=str(rule.pk),
            details=_audit_details(rule),
        )
        rule.delete()


def notifications_mark_read(*, user, ids: list[int] | None = None) -> int:
    """Mark the user's unread in-app notifications read (all of them, or those of `ids`)."""
    unread = Notification.objects.filter(recipient=user, channel=Channel.INAPP, read_at__isnull=True)
    if ids is not None:
        unread = unread.filter(pk__in=ids)
    return unread.update(read_at=timezone.now())
