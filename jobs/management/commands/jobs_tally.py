"""Recount the tally of finished jobs (the counts /metrics and the storage page read) from the jobs table."""

from django.core.management.base import BaseCommand

from jobs.services.tally import tally_rebuild


class Command(BaseCommand):
    help = "Recount the finished-jobs tally from the jobs table (after rows were restored or loaded directly)."

    def handle(self, *args, **options):
        rows = tally_rebuild()
        self.stdout.write(f"Tally recounted: {rows} rows.")
