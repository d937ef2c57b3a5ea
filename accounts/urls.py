from django.urls import path

from . import oidc, views

# Not namespaced: "login" must keep Django's own name (LOGIN_URL, templates), which this view replaces.
urlpatterns = [
    path("accounts/login/", views.login_view, name="login"),
    # Names of mozilla-django-oidc's own routes, which it reverses (the callback is the redirect URI).
    path("oidc/authenticate/", oidc.SignInStart.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", oidc.SignInCallback.as_view(), name="oidc_authentication_callback"),
    path("account/", views.account, name="account"),
    path("account/tokens/", views.tokens, name="account_tokens"),
    path("account/tokens/<int:token_id>/revoke/", views.token_revoke, name="account_token_revoke"),
]
