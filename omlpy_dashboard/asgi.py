import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omlpy_dashboard.settings")
application = get_asgi_application()

# A serving process with the embedded engine says at start whether it can isolate scripts here.
from django.conf import settings  # noqa: E402 - settings are configured by now

if settings.OMLENGINE_ENABLED:
    from omlengine.isolation import announce

    announce()
