import zoneinfo
from datetime import datetime

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.utils import timezone

from jobs.audit import AuditAction
from omlpy_dashboard.client_address import client_address

from . import throttling
from .models import ApiToken, Profile


class ThrottledAuthenticationForm(AuthenticationForm):
    """Django's sign-in form, telling the user plainly when sign-in is locked after too many failures."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "Too many failed sign-in attempts. Sign-in is locked for %(minutes)d minutes; try again later.",
    }

    def clean(self):
        try:
            return super().clean()
        except ValidationError:
            from django.conf import settings

            username = self.cleaned_data.get("username")
            if throttling.locked_scope(username, client_address(self.request)):
                raise ValidationError(
                    self.error_messages["throttled"],
                    code="throttled",
                    params={"minutes": max(1, settings.LOGIN_THROTTLE_SECONDS // 60)},
                ) from None
            raise


def timezone_choices() -> list[tuple[str, str]]:
    names = sorted(name for name in zoneinfo.available_timezones() if "/" in name or name == "UTC")
    return [(name, name.replace("_", " ")) for name in names]


class ProfileForm(forms.ModelForm):
    timezone = forms.ChoiceField(choices=timezone_choices, label="Time zone")

    class Meta:
        model = Profile
        fields = ["timezone"]


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. the script that uses it.")
    days = forms.IntegerField(label="Expires after (days)", min_value=1, required=False)
    scope = forms.ChoiceField(
        required=False,
        choices=ApiToken.Scope.choices,
        initial=ApiToken.Scope.READ_WRITE,
        widget=forms.RadioSelect,
        help_text="A read-only token may read jobs and results but is refused every submit, cancel or re-run.",
    )

    def __init__(self, *args, **kwargs):
        from django.conf import settings

        super().__init__(*args, **kwargs)
        days = self.fields["days"]
        # Read here rather than at import, so that the bounds follow the settings.
        days.initial = settings.API_TOKEN_DEFAULT_DAYS
        days.max_value = settings.API_TOKEN_MAX_DAYS
        days.validators = [*days.validators, MaxValueValidator(settings.API_TOKEN_MAX_DAYS)]
        days.widget.attrs.update({"min": 1, "max": settings.API_TOKEN_MAX_DAYS})
        days.help_text = f"1 to {settings.API_TOKEN_MAX_DAYS} days; {settings.API_TOKEN_DEFAULT_DAYS} when left empty."


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
