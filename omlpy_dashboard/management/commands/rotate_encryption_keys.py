"""`manage.py rotate_encryption_keys [--dry-run]`: re-encrypt every stored secret under the first key.

Rotating a key: put the new key first in ENCRYPTION_KEYS, keeping the old one after it, restart, run this
command, then remove the old key. Every value is checked before any is written, and all are written in one
transaction, so a value that no key decrypts stops the command with that row named and nothing changed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import Model

from jobs.crypto import key_position, reencrypt

# Every field holding a value encrypted with jobs.crypto, as ("app_label.Model", "field"). A new kind of
# encrypted field is rotated once it is listed here.
ENCRYPTED_FIELDS: list[tuple[str, str]] = [
    ("jobs.Connection", "password_encrypted"),
    ("notifications.NotificationRule", "target_encrypted"),
    ("notifications.NotificationRule", "secret_encrypted"),
]


@dataclass(frozen=True)
class StoredSecret:
    model: type[Model]
    field: str
    pk: Any
    row: str  # how the row is named in messages
    value: str
    key_position: int | None  # which key of ENCRYPTION_KEYS decrypts it now (1 is the first)

    @property
    def where(self) -> str:
        return f"{self.model._meta.label} id={self.pk} ({self.row!r}), field {self.field}"


def _stored_secrets() -> list[StoredSecret]:
    """Every non-empty encrypted value, its row locked until the surrounding transaction ends."""
    found = []
    for label, field in ENCRYPTED_FIELDS:
        model = apps.get_model(label)
        rows = model._default_manager.select_for_update().exclude(**{field: ""}).order_by("pk")
        for row in rows:
            value = getattr(row, field)
            if value:
                found.append(StoredSecret(model, field, row.pk, str(row), value, key_position(value)))
    return found


def _by_key(secrets: list[StoredSecret]) -> str:
    counts = Counter(secret.key_position for secret in secrets)
    return ", ".join(f"{counts[position]} under key {position}" for position in sorted(counts))


class Command(BaseCommand):
    help = "Re-encrypt every stored secret under the first key of ENCRYPTION_KEYS, in one transaction."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="say what would be re-encrypted; change nothing")

    def handle(self, *args: Any, dry_run: bool, **options: Any) -> None:
        with transaction.atomic():
            secrets = _stored_secrets()
            unreadable = [secret for secret in secrets if secret.key_position is None]
            if unreadable:
                rows = "; ".join(secret.where for secret in unreadable)
                raise CommandError(
                    f"No key of ENCRYPTION_KEYS decrypts {len(unreadable)} stored secret(s): {rows}. "
                    "Add the key they were encrypted with to ENCRYPTION_KEYS and run again. Nothing was changed."
                )
            if dry_run:
                self.stdout.write(
                    f"Would re-encrypt {len(secrets)} secret(s) under the first key of ENCRYPTION_KEYS"
                    + (f" (now {_by_key(secrets)})" if secrets else "")
                    + ". Nothing was changed (dry run)."
                )
                return
            for secret in secrets:
                # A plain UPDATE: re-encrypting changes no one's data (no timestamps, no signals).
                secret.model._default_manager.filter(pk=secret.pk).update(**{secret.field: reencrypt(secret.value)})
        self.stdout.write(
            f"Re-encrypted {len(secrets)} secret(s) under the first key of ENCRYPTION_KEYS"
            + (f" (before: {_by_key(secrets)})" if secrets else "")
            + "."
        )
