from django.core.management.base import BaseCommand, CommandError

from jobs.audit import audit_verify_chain
from jobs.models import AuditEntry


class Command(BaseCommand):
    help = "Check the audit trail's hash chain; exits non-zero naming the first entry that does not hold."

    def handle(self, *args, **options):
        report = audit_verify_chain()
        if report.broken is not None:
            entry = AuditEntry.objects.filter(pk=report.broken.entry_id).first()
            what = ""
            if entry is not None:
                what = f" ({entry.at:%Y-%m-%d %H:%M:%S} UTC, {entry.action} by {entry.actor_username or '-'})"
            raise CommandError(
                f"Audit chain broken at entry #{report.broken.entry_id}{what}: {report.broken.reason}. "
                f"{report.checked} entries before it are intact."
            )
        self.stdout.write(f"Audit chain intact: {report.checked} entries; head {report.head}.")
