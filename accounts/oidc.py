"""Sign-in through the company's identity provider over OpenID Connect (authorization code flow with PKCE).

mozilla-django-oidc speaks the protocol: the redirect to the provider with state, nonce and a PKCE challenge,
the code exchange and the ID token's signature. Here: where the provider's endpoints are (explicit settings,
else the issuer's discovery document), the ID token's issuer, audience and expiry, and the hand-over of the
verified claims to accounts.sso, which decides who signs in. Pages answer every failure with a clear status:
403 for a refusal, 400 for a callback that does not verify, 502 when the provider cannot be reached or answers
wrongly; never a 500.
"""

from __future__ import annotations

import logging
import threading
import time

import jwt
import requests
from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.db import IntegrityError
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from audit.services import AuditAction, audit_record

from .sso import Refusal, sso_sign_in

logger = logging.getLogger(__name__)

# How long a discovery document is kept in the process before it is fetched again.
DISCOVERY_TTL_SECONDS = 3600
# Seconds of clock difference with the provider tolerated on the ID token's times.
CLOCK_SKEW_SECONDS = 60

_DISCOVERY_KEYS = {
    "OIDC_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_USERINFO_ENDPOINT": "userinfo_endpoint",
    "OIDC_JWKS_ENDPOINT": "jwks_uri",
}
_discovered: dict[str, tuple[float, dict]] = {}
_discovery_lock = threading.Lock()


class ProviderUnavailable(Exception):
    """The provider could not be reached, or answered something other than what the protocol says."""


def issuer_forms(issuer: str) -> tuple[str, str]:
    """The issuer with and without a trailing slash: providers differ (Auth0's ends in one), and the ID token's
    `iss` and the discovery document carry the provider's own form."""
    bare = issuer.rstrip("/")
    return bare, bare + "/"


def _discovery(issuer: str) -> dict:
    with _discovery_lock:
        cached = _discovered.get(issuer)
        if cached is not None and time.monotonic() - cached[0] < DISCOVERY_TTL_SECONDS:
            return cached[1]
    url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderUnavailable(f"the discovery document at {url} could not be read ({exc})") from exc
    if not isinstance(document, dict) or document.get("issuer") not in issuer_forms(issuer):
        raise ProviderUnavailable(f"the discovery document at {url} names another issuer")
    with _discovery_lock:
        _discovered[issuer] = (time.monotonic(), document)
    return document


def provider_endpoints() -> dict[str, str]:
    """The provider's endpoints by setting name: explicit settings first, the rest from discovery."""
    endpoints = dict(settings.OIDC_ENDPOINTS)
    missing = [name for name, url in endpoints.items() if not url]
    if missing and settings.OIDC_ISSUER:
        document = _discovery(settings.OIDC_ISSUER)
        for name in missing:
            value = document.get(_DISCOVERY_KEYS[name])
            endpoints[name] = value if isinstance(value, str) else ""
    for name in ("OIDC_AUTHORIZATION_ENDPOINT", "OIDC_TOKEN_ENDPOINT"):
        if not endpoints[name]:
            raise ProviderUnavailable(f"the provider names no {_DISCOVERY_KEYS[name]}")
    return endpoints


class OidcBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend, acting only on the provider's callback, and leaving the decision of who
    signs in, and with which roles, to accounts.sso."""

    def __init__(self, *args, **kwargs):
        # Django builds a backend for every authenticate() and every request's user: no settings check and no
        # network here; the provider's endpoints are read when a callback is handled.
        from django.contrib.auth import get_user_model

        self.UserModel = get_user_model()
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None

    def authenticate(self, request, **kwargs):
        # Only the callback view passes a nonce; a password sign-in carrying ?code=&state= is not ours.
        if request is None or "nonce" not in kwargs or "password" in kwargs or not settings.OIDC_ENABLED:
            return None
        endpoints = provider_endpoints()
        self.OIDC_OP_TOKEN_ENDPOINT = endpoints["OIDC_TOKEN_ENDPOINT"]
        self.OIDC_OP_USER_ENDPOINT = endpoints["OIDC_USERINFO_ENDPOINT"]
        self.OIDC_OP_JWKS_ENDPOINT = endpoints["OIDC_JWKS_ENDPOINT"]
        return super().authenticate(request, **kwargs)

    def get_payload_data(self, token, key):
        """The ID token's claims, its signature, issuer, audience and times verified."""
        header = jwt.get_unverified_header(token) if isinstance(token, str | bytes) else {}
        if header.get("alg") != self.OIDC_RP_SIGN_ALGO:
            raise SuspiciousOperation(
                f"the ID token is signed with {header.get('alg')!r}, not {self.OIDC_RP_SIGN_ALGO}"
            )
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[self.OIDC_RP_SIGN_ALGO],
                audience=self.OIDC_RP_CLIENT_ID,
                issuer=issuer_forms(settings.OIDC_ISSUER) if settings.OIDC_ISSUER else None,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iat", "sub"], "verify_iss": bool(settings.OIDC_ISSUER)},
            )
        except jwt.InvalidTokenError as exc:
            raise SuspiciousOperation(f"the ID token does not verify: {exc}") from exc

    def get_userinfo(self, access_token, id_token, payload):
        """The ID token's claims, completed by the userinfo endpoint's when the provider has one."""
        if not self.OIDC_OP_USER_ENDPOINT:
            return dict(payload)
        userinfo = super().get_userinfo(access_token, id_token, payload)
        if not isinstance(userinfo, dict) or userinfo.get("sub") != payload.get("sub"):
            # OpenID Connect Core 5.3.2: a userinfo answer for another subject must not be used.
            raise SuspiciousOperation("the userinfo answer is about another subject than the ID token")
        # The signed ID token's own claims (issuer, subject, audience) are never replaced by the userinfo's.
        protocol = {name: payload[name] for name in ("iss", "sub", "aud") if name in payload}
        return {**payload, **userinfo, **protocol}

    def get_or_create_user(self, access_token, id_token, payload):
        claims = self.get_userinfo(access_token, id_token, payload)
        issuer = str(claims.get("iss") or settings.OIDC_ISSUER or self.OIDC_OP_TOKEN_ENDPOINT)
        try:
            result = sso_sign_in(claims=claims, issuer=issuer, request=self.request)
        except IntegrityError:
            # Two first sign-ins of one user at once (two tabs): the other made the account; use it.
            result = sso_sign_in(claims=claims, issuer=issuer, request=self.request)
        if result.refusal is not None:
            self.request.sso_refusal = result.refusal
            return None
        return result.user

    def get_user(self, user_id):
        user = super().get_user(user_id)
        # An inactive user's session no longer signs them in (Django's own backend does the same).
        return user if user is not None and self.user_can_authenticate(user) else None


def _enabled_or_404() -> None:
    if not settings.OIDC_ENABLED:
        raise Http404("Single sign-on is not switched on.")


def _failure(request, *, status: int, title: str, message: str, reason: str):
    audit_record(
        action=AuditAction.LOGIN_FAILED,
        request=request,
        target_type="user",
        details={"via": "sso", "reason": reason[:500]},
    )
    context = {"title": title, "message": message, "provider": settings.OIDC_PROVIDER_NAME}
    return render(request, "registration/sso_failed.html", context, status=status)


def _unavailable(request, exc: Exception):
    logger.warning("single sign-on: %s", exc)
    return _failure(
        request,
        status=502,
        title="The identity provider did not answer as expected",
        message=f"{settings.OIDC_PROVIDER_NAME} could not be reached or answered wrongly. Try again in a moment.",
        reason=str(exc),
    )


class SignInStart(OIDCAuthenticationRequestView):
    """Sends the browser to the provider's sign-in page."""

    def __init__(self, *args, **kwargs):
        # The parent reads its endpoint from settings at construction; ours comes from provider_endpoints().
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)

    def get(self, request):
        _enabled_or_404()
        try:
            self.OIDC_OP_AUTH_ENDPOINT = provider_endpoints()["OIDC_AUTHORIZATION_ENDPOINT"]
        except ProviderUnavailable as exc:
            return _unavailable(request, exc)
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        return super().get(request)


class SignInCallback(OIDCAuthenticationCallbackView):
    """The provider's answer: signs the user in, or says plainly why not."""

    def get(self, request):
        _enabled_or_404()
        try:
            return super().get(request)
        except ProviderUnavailable as exc:
            return _unavailable(request, exc)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 502
            if 400 <= status < 500:
                # The provider refused the code (used twice, expired): this attempt is over, a new one may work.
                return _failure(
                    request,
                    status=400,
                    title="Sign-in could not be completed",
                    message="The identity provider did not accept this sign-in attempt. Start again from the "
                    "sign-in page.",
                    reason=f"the provider answered {status}",
                )
            return _unavailable(request, exc)
        except requests.RequestException as exc:
            # The code exchange, the keys or the userinfo: mozilla-django-oidc lets requests' errors through.
            return _unavailable(request, exc)
        except (SuspiciousOperation, jwt.InvalidTokenError, KeyError, ValueError) as exc:
            return _failure(
                request,
                status=400,
                title="Sign-in could not be completed",
                message="The answer from the identity provider could not be verified. Start again from the "
                "sign-in page.",
                reason=str(exc) or type(exc).__name__,
            )

    def login_failure(self):
        refusal: Refusal | None = getattr(self.request, "sso_refusal", None)
        if refusal is not None:
            context = {"refusal": refusal, "provider": settings.OIDC_PROVIDER_NAME}
            return render(self.request, "registration/sso_refused.html", context, status=403)
        error = self.request.GET.get("error", "")[:100]
        if error:
            answer = ": ".join(filter(None, [error, self.request.GET.get("error_description", "")[:300]]))
            return _failure(
                self.request,
                status=403,
                title="The identity provider did not sign you in",
                message=f"{settings.OIDC_PROVIDER_NAME} answered “{answer}”.",
                reason=f"provider error {error}",
            )
        if "code" not in self.request.GET or "state" not in self.request.GET:
            return HttpResponseRedirect(reverse("login"))
        return _failure(
            self.request,
            status=400,
            title="Sign-in could not be completed",
            message="This sign-in attempt is no longer valid (it was started in another browser, or the page was "
            "reloaded). Start again from the sign-in page.",
            reason="callback without a matching sign-in attempt",
        )
