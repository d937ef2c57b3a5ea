from celery import shared_task

from .checkpoints import audit_checkpoint_write


@shared_task(name="audit.tasks.audit_checkpoint")
def audit_checkpoint() -> str:
    """Sign the audit chain's head into AUDIT_CHECKPOINT_DIR (audit.checkpoints); beat schedules it."""
    return str(audit_checkpoint_write())
