"""Pages under the account menu: the rules, a rule's deliveries, and the in-app notifications. Thin: writes go
through notifications.services, reads through notifications.selectors."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from jobs.selectors import access

from . import selectors, services
from .forms import RuleForm
from .models import NotificationRule


def _form(request, data=None, initial=None) -> RuleForm:
    return RuleForm(
        data,
        initial=initial,
        teams=services.rule_teams(request.user),
        connections=access.visible_connections(request.user),
    )


def _input(form: RuleForm, keep_target: str = "") -> services.RuleInput:
    data = form.cleaned_data
    return services.RuleInput(
        name=data["name"],
        events=data["events"],
        channel=data["channel"],
        target=data["target"] or (keep_target if data["channel"] != "inapp" else ""),
        format=data["format"],
        scope=data["scope"],
        team=data["team"],
        script=data["script"],
        connection=data["connection"],
        kind=data["kind"],
        factor=data["factor"],
        minutes=data["minutes"],
        stuck_minutes=data["stuck_minutes"],
        enabled=data["enabled"],
    )


def _save(request, form: RuleForm, rule: NotificationRule | None):
    """Create or change the rule from a valid form; form errors for a refused value."""
    try:
        if rule is None:
            rule, secret = services.rule_create(user=request.user, data=_input(form), request=request)
            if secret:
                messages.success(request, f"Rule created. Its webhook signing secret, shown only now: {secret}")
            else:
                messages.success(request, "Rule created.")
        else:
            services.rule_update(user=request.user, rule=rule, data=_input(form, rule.target), request=request)
            messages.success(request, "Rule saved.")
    except ValidationError as exc:
        for name, errors in exc.message_dict.items():
            for error in errors:
                form.add_error(name if name in form.fields else None, error)
        return None
    except services.TargetForbidden as exc:
        form.add_error("target", str(exc))
        return None
    return rule


@login_required
def rules(request):
    context = {
        "rules": selectors.visible_rules(request.user)[:200],
        "can_make": services.can_make_rules(request.user),
    }
    return render(request, "notifications/rules.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def rule_new(request):
    if not services.can_make_rules(request.user):
        raise PermissionDenied("Auditors review; they do not make notification rules.")
    form = _form(request, request.POST or None)
    if request.method == "POST" and form.is_valid():
        rule = _save(request, form, None)
        if rule is not None:
            return redirect("notifications:rule", rule_id=rule.pk)
    return render(request, "notifications/rule_form.html", {"form": form, "rule": None}, status=200)


@login_required
def rule_detail(request, rule_id):
    rule = selectors.rule_for_user(request.user, rule_id)
    context = {
        "rule": rule,
        "deliveries": selectors.rule_deliveries(rule),
        "may_change": services.may_change_rule(request.user, rule),
    }
    return render(request, "notifications/rule.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def rule_edit(request, rule_id):
    rule = selectors.rule_for_user(request.user, rule_id)
    if not services.may_change_rule(request.user, rule):
        raise PermissionDenied("Only the rule's owner, the team's leads and administrators change it.")
    initial = {
        "name": rule.name,
        "events": rule.events,
        "channel": rule.channel,
        "format": rule.format,
        "scope": rule.scope,
        "team": rule.team_id,
        "script": rule.script,
        "connection": rule.connection_id,
        "kind": rule.kind,
        "factor": rule.factor,
        "minutes": rule.minutes,
        "stuck_minutes": rule.stuck_minutes,
        "enabled": rule.enabled,
    }
    form = _form(request, request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid() and _save(request, form, rule) is not None:
        return redirect("notifications:rule", rule_id=rule.pk)
    return render(request, "notifications/rule_form.html", {"form": form, "rule": rule})


@login_required
@require_POST
def rule_delete(request, rule_id):
    rule = selectors.rule_for_user(request.user, rule_id)
    services.rule_delete(user=request.user, rule=rule, request=request)
    messages.success(request, "Rule deleted.")
    return redirect("notifications:rules")


@login_required
def inbox(request):
    return render(request, "notifications/inbox.html", {"notifications": selectors.inbox(request.user)})


@login_required
@require_POST
def mark_read(request):
    ids = request.POST.getlist("id")
    services.notifications_mark_read(
        user=request.user, ids=[int(value) for value in ids if value.isascii() and value.isdigit()] if ids else None
    )
    return redirect("notifications:inbox")


@login_required
def bell(request):
    """The bell's count as a fragment, refreshed by htmx."""
    response = render(request, "notifications/_bell.html", {"unread": selectors.unread_count(request.user)})
    return response if isinstance(response, HttpResponse) else HttpResponse(response)
