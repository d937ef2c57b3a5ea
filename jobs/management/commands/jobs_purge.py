"""Apply the retention policies now (what the scheduled purge does), or with --dry-run say what it would remove."""

from django.core.management.base import BaseCommand
from django.template.defaultfilters import filesizeformat

from accounts.models import Team
from jobs.services import retention


class Command(BaseCommand):
    help = "Remove result bodies and job rows past their team's retention (never pinned jobs, never the audit trail)."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Say what would be removed; remove nothing.")

    def handle(self, *args, dry_run: bool = False, **options):
        report = retention.purge_plan() if dry_run else retention.purge()
        verb = "Would remove" if dry_run else "Removed"
        teams = dict(Team.objects.values_list("pk", "name"))
        for team_id, totals in sorted(report.per_team.items(), key=lambda item: teams.get(item[0], "")):
            name = teams.get(team_id, "no team") if team_id else "no team"
            self.stdout.write(
                f"  {name}: {totals['results']} result bodies ({filesizeformat(totals['result_bytes'])}), "
                f"{totals['jobs']} jobs"
            )
        self.stdout.write(
            f"{verb} {report.results} result bodies ({report.result_bytes} bytes) and {report.jobs} jobs."
        )
