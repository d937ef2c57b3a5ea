from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from . import throttling


class ThrottledModelBackend(ModelBackend):
    """Django's user/password check, refused outright while a sign-in lock holds for this client and user name.

    Refusing here covers every sign-in form (the site's and the admin's); the forms then say for how long.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(self.get_user_model().USERNAME_FIELD)
        lock = throttling.lock_in_force(request, username)
        if lock is not None:
            throttling.refuse(request, lock)
            # Django answers a PermissionDenied by sending user_login_failed and trying no other backend.
            raise PermissionDenied
        return super().authenticate(request, username=username, password=password, **kwargs)
