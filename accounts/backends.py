from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from omlpy_dashboard.client_address import client_address

from . import throttling


class ThrottledModelBackend(ModelBackend):
    """Django's user/password check, refused outright while the user name or the address is locked.

    Refusing here covers every sign-in form (the site's and the admin's); the site's form then explains why.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(self.get_user_model().USERNAME_FIELD)
        if throttling.locked_scope(username, client_address(request)):
            # Django answers a PermissionDenied by sending user_login_failed and trying no other backend.
            raise PermissionDenied
        return super().authenticate(request, username=username, password=password, **kwargs)
