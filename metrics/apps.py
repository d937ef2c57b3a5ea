from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "metrics"
    verbose_name = "Metrics"

    def ready(self) -> None:
        from django.core.signals import request_finished

        from . import store

        # A request that talked to OML (a script list, say) recorded its requests: add them when it ends.
        request_finished.connect(store.flush_quietly_if_pending, dispatch_uid="metrics-flush-request")
        try:
            from celery import signals
        except ImportError:  # pragma: no cover - celery is a dependency of the project
            return
        # Every task ends with one flush of what it recorded (the sweep: every poll of the sweep at once).
        signals.task_postrun.connect(store.flush_quietly_if_pending, dispatch_uid="metrics-flush-task", weak=False)
        signals.worker_process_shutdown.connect(
            store.flush_quietly_if_pending, dispatch_uid="metrics-flush-shutdown", weak=False
        )
