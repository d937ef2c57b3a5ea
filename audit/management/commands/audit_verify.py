from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from audit.checkpoints import audit_verify


class Command(BaseCommand):
    help = (
        "Check the audit trail's signed chain and hold it against the newest checkpoint in AUDIT_CHECKPOINT_DIR; "
        "exits non-zero naming each finding (the first entry that does not hold, a chain shorter than a "
        "checkpoint saw, a checkpoint that does not verify)."
    )

    def handle(self, *args, **options):
        result = audit_verify()
        if not result.ok:
            raise CommandError("\n".join(result.findings))
        report = result.report
        self.stdout.write(f"Audit chain intact: {report.checked} entries; head {report.head}.")
        if result.checkpoint is None:
            self.stderr.write(
                f"No checkpoint in {settings.AUDIT_CHECKPOINT_DIR}: the removal of the newest entries would go "
                "unnoticed. The audit_checkpoint task, scheduled by beat, writes them."
            )
        else:
            checkpoint = result.checkpoint
            self.stdout.write(
                f"It holds against {checkpoint.describe()} ({checkpoint.count} entries, key {checkpoint.key_id}); "
                f"entries written after it are vouched for by no checkpoint yet."
            )
