"""Record the columns of results stored before they were recorded, so that their downloads read them once."""

from django.core.management.base import BaseCommand

from jobs.services.jobs import results_describe_stored


class Command(BaseCommand):
    help = (
        "Record shape, rows and columns of stored results that have no columns yet (stored before columns were "
        "recorded). Downloads work without it; with it, a CSV or XLSX download reads the body once, not twice."
    )

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=None, help="describe at most this many results")

    def handle(self, *args, **options):
        done = results_describe_stored(limit=options["limit"])
        self.stdout.write(f"Results described: {done}.")
