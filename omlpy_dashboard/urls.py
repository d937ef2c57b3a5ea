from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from jobs.api import api
from jobs.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("", include("accounts.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("jobs.urls_results")),
    path("", include("jobs.urls")),
]

if settings.OMLENGINE_ENABLED:
    # The embedded engine answers at OML's own paths (/omlusers/..., /oml/api/py-scripts/...).
    urlpatterns += [path("", include("omlengine.urls"))]
