from django.apps import AppConfig


class OmlEngineConfig(AppConfig):
    name = "omlengine"
    verbose_name = "Embedded OML engine"
