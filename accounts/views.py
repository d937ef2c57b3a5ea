import csv
import json
from datetime import UTC
from functools import wraps

from django.contrib import admin, messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from jobs.access import can_view_audit
from jobs.spreadsheet import formula_safe

from . import known_clients
from . import tokens as token_service
from .forms import AuditFilterForm, ProfileForm, ThrottledAuthenticationForm, TokenCreateForm, aware
from .models import ApiToken
from .selectors import AuditFilters, audit_iter_all, audit_page
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


def _audit_filters(request) -> tuple[AuditFilterForm, AuditFilters | None]:
    """The filters of the page and the export alike; None when they do not parse."""
    if not can_view_audit(request.user):
        raise PermissionDenied("Only auditors and administrators may read the audit trail.")
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        return form, None
    data = form.cleaned_data
    filters = AuditFilters(
        actor=data["actor"].strip(),
        action=data["action"],
        target=data["target"].strip(),
        since=aware(data["since"]),
        until=aware(data["until"]),
    )
    return form, filters


@require_GET
@login_required
def audit_list(request):
    form, filters = _audit_filters(request)
    rows, next_cursor = audit_page(request.user, filters, request.GET.get("after")) if filters else ([], None)
    query = filters.as_query() if filters else {}
    context = {"form": form, "rows": rows, "next_cursor": next_cursor, "query": query}
    return render(request, "audit/list.html", context)


class _Echo:
    def write(self, value):
        return value


_CSV_HEADER = ["id", "at_utc", "actor", "action", "ip", "target_type", "target_id", "details", "entry_hash"]


def _csv_cell(value) -> str:
    # A cell a spreadsheet would read as a formula is made inert, by the rule result downloads follow too.
    return formula_safe("" if value is None else str(value))


def _csv_rows(user, filters: AuditFilters):
    writer = csv.writer(_Echo())
    yield writer.writerow(_CSV_HEADER)
    for entry in audit_iter_all(user, filters):
        yield writer.writerow(
            [
                entry.id,
                entry.at.astimezone(UTC).isoformat(),
                _csv_cell(entry.actor_username),
                _csv_cell(entry.action),
                entry.ip or "",
                _csv_cell(entry.target_type),
                _csv_cell(entry.target_id),
                _csv_cell(json.dumps(entry.details, sort_keys=True, ensure_ascii=False)),
                entry.entry_hash,
            ]
        )


@require_GET
@login_required
def audit_export(request):
    form, filters = _audit_filters(request)
    if filters is None:
        errors = "; ".join(f"{field}: {' '.join(texts)}" for field, texts in form.errors.items())
        return HttpResponseBadRequest(f"Invalid filters: {errors}", content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(_csv_rows(request.user, filters), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
    return response
