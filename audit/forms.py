from datetime import datetime

from django import forms
from django.utils import timezone

from .services import AuditAction


class AuditFilterForm(forms.Form):
    """The audit page's filters; times are read in the user's time zone."""

    actor = forms.CharField(required=False, max_length=150, label="Actor (user name)")
    action = forms.ChoiceField(required=False, choices=[("", "any action")])
    target = forms.CharField(required=False, max_length=64, label="Target (job id or other id)")
    since = forms.DateTimeField(
        required=False,
        label="From",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    until = forms.DateTimeField(
        required=False,
        label="Until",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["action"].choices = [("", "any action")] + [(a, a.replace("_", " ")) for a in AuditAction.all()]

    def clean(self):
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("until", "Must be after “From”.")
        return cleaned


def aware(value: datetime | None) -> datetime | None:
    if value is not None and timezone.is_naive(value):
        return timezone.make_aware(value)
    return value
