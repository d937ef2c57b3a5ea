"""The reads pages and the API share: the rules a user sees, deliveries of a rule or a job, the bell's count.

Rules are seen by their owner, the team's leads (team rules) and auditors (team rules and the members' own),
and admins; changed only as notifications.services.may_change_rule says."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from accounts.models import Membership
from jobs.models import Job
from jobs.selectors import access

from .models import Channel, Notification, NotificationRule

UNREAD_CAP = 99
PAGE = 100


def visible_rules(user) -> QuerySet[NotificationRule]:
    """Own rules; the team rules of teams the user leads or audits; every rule for admins."""
    if not user.is_authenticated:
        return NotificationRule.objects.none()
    rules = NotificationRule.objects.select_related("owner", "team", "connection")
    if access.is_admin(user):
        return rules
    roles = access.memberships(user)
    teams = sorted({role.team_id for role in roles if role.role in ("lead", "auditor")})
    audited = sorted({role.team_id for role in roles if role.role == "auditor"})
    condition = Q(owner=user) | Q(scope="team", team_id__in=teams)
    if audited:
        # Auditors review the team's history: its members' own rules and their deliveries too.
        members = Membership.objects.filter(team_id__in=audited).values("user_id")
        condition |= Q(scope="mine", owner_id__in=members)
    return rules.filter(condition)


def rule_for_user(user, rule_id) -> NotificationRule:
    from django.http import Http404

    key = str(rule_id)
    if not (key.isascii() and key.isdigit() and int(key) < 2**63):
        raise Http404("No such rule.")
    rule = visible_rules(user).filter(pk=int(key)).first()
    if rule is None:
        raise Http404("No such rule.")
    return rule


def rule_deliveries(rule: NotificationRule) -> QuerySet[Notification]:
    return rule.notifications.order_by("-created_at", "-id")[:PAGE]


def job_deliveries(user, job: Job) -> list[Notification]:
    """The notifications about a job the user may see (the job itself is visible to them): those of rules they
    see."""
    rows = Notification.objects.filter(job_uuid=job.uuid).select_related("rule").order_by("-created_at")[:PAGE]
    rules = None if access.is_admin(user) else set(visible_rules(user).values_list("pk", flat=True))
    return [row for row in rows if rules is None or row.rule_id in rules]


def unread_count(user) -> int:
    """The bell's figure, at most UNREAD_CAP + 1 rows counted (shown as 99+)."""
    if not user.is_authenticated:
        return 0
    # At most UNREAD_CAP + 1 ids off the partial index: list pages never run COUNT.
    rows = Notification.objects.filter(recipient=user, channel=Channel.INAPP, read_at__isnull=True)
    return len(rows.order_by().values_list("pk", flat=True)[: UNREAD_CAP + 1])


def inbox(user) -> QuerySet[Notification]:
    return Notification.objects.filter(recipient=user, channel=Channel.INAPP).order_by("-created_at", "-id")[:PAGE]
