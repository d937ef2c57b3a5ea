"""Rebuild the analytics' hourly rollups from the job rows (for rows written by anything but the services), and
the team rollups from the hourly ones."""

from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from jobs.services.rollups import rollups_rebuild


def _day(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise CommandError(f"{text!r} is not a day (YYYY-MM-DD, UTC).") from None


class Command(BaseCommand):
    help = (
        "Recompute the live rollups (jobs whose rows remain) from the rows, for jobs created in a range of UTC "
        "days (all without one), and the team rollups of those days from the hourly ones. Rollups of jobs "
        "retention removed are kept. Run it over a range in which no job "
        "is ending (e.g. rows loaded by SQL), since a job that ends meanwhile may be counted twice."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", type=_day, help="First UTC day (YYYY-MM-DD) of creation to rebuild.")
        parser.add_argument("--until", type=_day, help="UTC day (YYYY-MM-DD) after the last one to rebuild.")

    def handle(self, *args, since=None, until=None, **options):
        if since and until and until <= since:
            raise CommandError("--until must come after --since.")
        counted = rollups_rebuild(start=since, end=until)
        self.stdout.write(f"Rolled up {counted} finished jobs.")
