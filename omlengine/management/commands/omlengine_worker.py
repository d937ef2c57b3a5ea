"""Run the embedded engine's async jobs until SIGTERM (see omlengine.worker for the loop and its guarantees)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from omlengine.worker import EngineWorker


class Command(BaseCommand):
    help = "Run the embedded engine's async jobs (graceful on SIGTERM)."

    def add_arguments(self, parser):
        parser.add_argument("--slots", type=int, default=settings.OMLENGINE_WORKER_SLOTS, help="Most jobs at once.")

    def handle(self, *args, **options):
        EngineWorker(slots=options["slots"], grace_seconds=settings.OMLENGINE_WORKER_GRACE_SECONDS).run()
