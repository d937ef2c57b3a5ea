import zoneinfo

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator

from audit.services import AuditAction, audit_record

from . import throttling
from .backends import local_password_allowed
from .models import ApiToken, Profile


class ThrottleMessageMixin:
    """Tells the user plainly, with the seconds left, when sign-in is locked after too many failures, and when
    local passwords are switched off.

    `retry_after` is then set on the form, for the view to answer 429 with a Retry-After header.
    """

    throttled_message = "Too many failed sign-in attempts. Sign-in is locked: try again in %(seconds)d s."
    local_passwords_off_message = "Sign-in with a password is switched off on this site: sign in with %(provider)s."
    retry_after: int | None = None

    def clean(self):
        from django.conf import settings

        username = self.cleaned_data.get("username")
        if username and not local_password_allowed(username):
            # Refused before the password is checked: it is not a guess, and it says nothing of the password.
            audit_record(
                action=AuditAction.LOGIN_REFUSED,
                request=self.request,
                target_type="user",
                details={"username": username[:150], "reason": "local passwords are off"},
            )
            raise ValidationError(
                self.local_passwords_off_message,
                code="local_passwords_off",
                params={"provider": settings.OIDC_PROVIDER_NAME},
            )
        try:
            return super().clean()
        except ValidationError:
            lock = throttling.lock_of_attempt(self.request)
            if lock is None:
                raise
            self.retry_after = throttling.remaining_seconds(lock)
            raise ValidationError(
                self.throttled_message, code="throttled", params={"seconds": self.retry_after}
            ) from None


class ThrottledAuthenticationForm(ThrottleMessageMixin, AuthenticationForm):
    """The site's sign-in form."""


class ThrottledAdminAuthenticationForm(ThrottleMessageMixin, AdminAuthenticationForm):
    """The admin's sign-in form."""


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
