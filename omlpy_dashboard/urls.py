from django.conf import settings
from django.contrib import admin
from django.http import HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path
from django.views.decorators.http import require_GET

from accounts import views as accounts_views
from jobs.api.jobs import api
from omlpy_dashboard import health


@require_GET
def favicon(request):
    """Browsers ask for /favicon.ico whatever the page says: send them to the static file (whitenoise serves it,
    under its hashed name in production, with a long cache lifetime)."""
    response = HttpResponseRedirect(static("favicon.ico"))
    response["Cache-Control"] = "public, max-age=86400"
    return response


urlpatterns = [
    path("favicon.ico", favicon, name="favicon"),
    # Answered by health.HealthCheckMiddleware before anything else; routed too, so that they resolve.
    path("livez", health.livez, name="livez"),
    path("readyz", health.readyz, name="readyz"),
    path("healthz", health.healthz, name="healthz"),
    # The admin's sign-in, answering 429 while sign-in is locked (accounts.views.answers_throttled_sign_in).
    path("admin/login/", accounts_views.admin_login, name="admin_login"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("", include("accounts.urls")),
    path("", include("audit.urls")),
    path("", include("notifications.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("jobs.web.urls_results")),
    path("", include("jobs.web.urls")),
]

# A database outage answers 503 with Retry-After, even when it breaks inside middleware (see outage.py).
handler500 = "omlpy_dashboard.outage.server_error"
# An oversized body answers 413 with the limit (see refusals.py).
handler400 = "omlpy_dashboard.refusals.bad_request"

if settings.OMLENGINE_ENABLED:
    # The embedded engine answers at OML's own paths (/omlusers/..., /oml/api/py-scripts/...).
    urlpatterns += [path("", include("omlengine.urls"))]
