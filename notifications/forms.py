from __future__ import annotations

from django import forms

from jobs.models import JobKind

from .models import RULE_EVENTS, Channel, Event, NotificationRule


class RuleForm(forms.Form):
    name = forms.CharField(max_length=100, required=False)
    events = forms.MultipleChoiceField(
        choices=[(event, Event(event).label) for event in RULE_EVENTS], widget=forms.CheckboxSelectMultiple
    )
    channel = forms.ChoiceField(choices=Channel.choices)
    target = forms.CharField(
        max_length=2000,
        required=False,
        help_text="Email address, webhook URL or Apprise URL; empty for in-app. On edit, empty keeps the stored one.",
    )
    format = forms.ChoiceField(choices=NotificationRule.Format.choices, initial="json")
    scope = forms.ChoiceField(choices=NotificationRule.Scope.choices, initial="mine")
    team = forms.TypedChoiceField(coerce=int, required=False, empty_value=None, choices=())
    script = forms.CharField(max_length=128, required=False)
    connection = forms.TypedChoiceField(coerce=int, required=False, empty_value=None, choices=())
    kind = forms.ChoiceField(choices=[("", "Any"), *JobKind.choices], required=False)
    factor = forms.FloatField(min_value=1.0, max_value=100.0, initial=1.5)
    minutes = forms.IntegerField(min_value=1, max_value=7 * 24 * 60, initial=60)
    stuck_minutes = forms.IntegerField(min_value=1, max_value=7 * 24 * 60, initial=15)
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, teams=(), connections=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].choices = [("", "—"), *((team.pk, team.name) for team in teams)]
        self.fields["connection"].choices = [("", "Any"), *((c.pk, c.name) for c in connections)]
