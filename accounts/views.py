from functools import wraps

from django.contrib import admin, messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from . import known_clients
from . import tokens as token_service
from .forms import ProfileForm, ThrottledAuthenticationForm, TokenCreateForm
from .models import ApiToken
from .services import profile_for, profile_update


class LoginView(auth_views.LoginView):
    """Django's sign-in page, with the identity provider's button when single sign-on is on."""

    authentication_form = ThrottledAuthenticationForm

    def get_context_data(self, **kwargs):
        from django.conf import settings

        context = super().get_context_data(**kwargs)
        context["sso"] = {
            "enabled": settings.OIDC_ENABLED,
            "provider": settings.OIDC_PROVIDER_NAME,
            "local_passwords": settings.LOCAL_PASSWORDS,
        }
        return context


def answers_throttled_sign_in(view):
    """A sign-in view that answers 429 with Retry-After while sign-in is locked (the page says for how long),
    and that marks the browser of a successful sign-in as a known device (accounts.known_clients)."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        form = (getattr(response, "context_data", None) or {}).get("form")
        retry_after = getattr(form, "retry_after", None)
        if retry_after:
            response.status_code = 429
            response["Retry-After"] = str(retry_after)
        known_clients.set_cookie(request, response)
        return response

    return wrapped


login_view = answers_throttled_sign_in(LoginView.as_view())


@answers_throttled_sign_in
def admin_login(request):
    """The admin's own sign-in page (its form is ThrottledAdminAuthenticationForm, see accounts.admin)."""
    return admin.site.login(request)


@login_required
def account(request):
    profile = profile_for(request.user)
    form = ProfileForm(request.POST or None, instance=profile)
    if request.method == "POST" and form.is_valid():
        profile_update(profile=profile, timezone_name=form.cleaned_data["timezone"], request=request)
        messages.success(request, f"Times are now shown in {form.cleaned_data['timezone']}.")
        return redirect("account")
    return render(request, "accounts/account.html", {"form": form, "now": timezone.now()})


@never_cache
@login_required
def tokens(request):
    form = TokenCreateForm(request.POST or None)
    new_secret = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        _, new_secret = token_service.token_create(
            user=request.user,
            name=data["name"],
            days=data["days"],  # None: the default lifetime
            read_only=data["scope"] == ApiToken.Scope.READ_ONLY,
            request=request,
        )
        form = TokenCreateForm()
    context = {"form": form, "tokens": token_service.tokens_of(request.user), "new_secret": new_secret}
    return render(request, "accounts/tokens.html", context, status=400 if form.errors else 200)


@require_POST
@login_required
def token_revoke(request, token_id: int):
    token = get_object_or_404(token_service.tokens_of(request.user), pk=token_id)
    if token_service.token_revoke(token=token, request=request):
        messages.success(request, f"Token “{token.name}” ({token.prefix}…) is revoked.")
    return redirect("account_tokens")
