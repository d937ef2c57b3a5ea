"""OML's own paths: the token endpoint and the Embedded Python Execution REST API, v1 and v2."""

from django.urls import path, register_converter

from . import views
from .protocol import API_VERSIONS, KINDS


class _Words:
    """A path segment that is one of a fixed set of words."""

    regex: str

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class VersionConverter(_Words):
    regex = "|".join(API_VERSIONS)


class KindConverter(_Words):
    regex = "|".join(KINDS)


register_converter(VersionConverter, "omlversion")
register_converter(KindConverter, "omlkind")

BASE = "oml/api/py-scripts/<omlversion:version>/"

urlpatterns = [
    path("omlusers/api/oauth2/v1/token", views.token, name="omlengine-token"),
    path(BASE + "scripts", views.scripts, name="omlengine-scripts"),
    path(BASE + "envs", views.envs, name="omlengine-envs"),
    path(BASE + "<omlkind:kind>/<str:script>", views.execute, name="omlengine-execute"),
    path(BASE + "<omlkind:kind>/<str:script>/<str:owner>", views.execute, name="omlengine-execute-owner"),
    path(BASE + "jobs/<str:job_id>", views.job, name="omlengine-job"),
    path(BASE + "jobs/<str:job_id>/result", views.job_result, name="omlengine-job-result"),
]
