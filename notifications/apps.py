from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The outbox is written inside every job transition, and the sweep looks for slow and stuck jobs: the
        # jobs app calls what is registered here, so that it never imports this app.
        from jobs.api.jobs import api
        from jobs.services import hooks

        from . import outbox, retention, watch
        from .api import router

        # The API's document and URLs are built on first use, after every app is ready (ready() runs once).
        api.add_router("/notification-rules", router)

        hooks.transition_hook_register(outbox.notifications_for_transition)
        hooks.sweep_hook_register(watch.notifications_watch)
        hooks.purge_hook_register(retention.notifications_purge)
