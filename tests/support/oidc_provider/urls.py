from django.contrib.auth import views as auth_views
from django.urls import include, path

from .sync import sync_view

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="oidc_provider/login.html"), name="login"),
    path("o/", include("oauth2_provider.urls")),
    path("test-support/sync/", sync_view),
]
