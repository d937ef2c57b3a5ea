from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from . import throttling


def local_password_allowed(username: str | None) -> bool:
    """Whether `username` may sign in with a local password: anyone while LOCAL_PASSWORDS is on, otherwise only
    the break-glass account."""
    if settings.LOCAL_PASSWORDS:
        return True
    return bool(settings.BREAK_GLASS_USERNAME) and username == settings.BREAK_GLASS_USERNAME


class ThrottledModelBackend(ModelBackend):
    """Django's user/password check, refused outright while a sign-in lock holds for this client and user name,
    and for everyone but the break-glass superuser while local passwords are off.

    Refusing here covers every sign-in form (the site's and the admin's); the forms then say for how long.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None  # not a password sign-in (the identity provider's callback)
        lock = throttling.lock_in_force(request, username)
        if lock is not None:
            throttling.refuse(request, lock)
            # Django answers a PermissionDenied by sending user_login_failed and trying no other backend.
            raise PermissionDenied
        if not local_password_allowed(username):
            return None
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None and not settings.LOCAL_PASSWORDS and not user.is_superuser:
            return None
        return user
