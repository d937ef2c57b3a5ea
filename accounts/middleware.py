import zoneinfo

from django.utils import timezone
from django.utils.cache import patch_cache_control


class UserTimezoneMiddleware:
    """Shows times in the signed-in user's time zone (Profile.timezone); UTC otherwise."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        tzname = "UTC"
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            # A user without a profile raises RelatedObjectDoesNotExist, an AttributeError.
            profile = getattr(user, "profile", None)
            if profile is not None:
                tzname = profile.timezone
        try:
            timezone.activate(zoneinfo.ZoneInfo(tzname))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            timezone.activate(zoneinfo.ZoneInfo("UTC"))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


class ContentSecurityPolicyMiddleware:
    """Sends settings.CONTENT_SECURITY_POLICY on every answer that does not set its own."""

    def __init__(self, get_response):
        from django.conf import settings

        self.get_response = get_response
        self.policy = settings.CONTENT_SECURITY_POLICY

    def __call__(self, request):
        response = self.get_response(request)
        if self.policy:
            response.headers.setdefault("Content-Security-Policy", self.policy)
        return response


class NoStoreMiddleware:
    """Sends `Cache-Control: no-store` on every answer the site's views make that does not set its own.

    Jobs, results, downloads, analytics and the audit trail are private data: no browser or proxy may keep a copy
    (a shared computer's cache, the back button after signing out). One rule for every view, the JSON API
    included, so that a new page or download is covered without anyone remembering to. Static files never reach
    it (WhiteNoise answers them first, with their own long caching).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if "Cache-Control" not in response:
            patch_cache_control(response, no_store=True)
        return response
