"""Arrangement for the audit trail's tests: entries written through audit_record, the table changed behind the
application's back as someone with database access could, and audit_verify run as an operator runs it."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC

from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from audit.models import AuditEntry
from audit.services import audit_record


def entries(actor, count: int = 5) -> list[AuditEntry]:
    return [
        audit_record(action="submit", actor=actor, target_type="job", target_id=f"job-{n}", details={"n": n})
        for n in range(count)
    ]


def tamper(sql: str, params: list) -> None:
    """Change the table behind the application's back, as someone with database access could."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A superuser's way around triggers, without ALTER TABLE (which pending FK checks forbid here).
            cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute(sql, params)
            cursor.execute("SET LOCAL session_replication_role = origin")
        else:
            cursor.execute("DROP TRIGGER IF EXISTS jobs_auditentry_append_only")
            cursor.execute(sql, params)


def plain_sha256(content: dict) -> str:
    """The unkeyed hash the chain used before it was keyed: SHA-256 of the canonical JSON of an entry's content."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def content_of(entry: AuditEntry, **changes) -> dict:
    """What an unkeyed entry's hash covers, as the chain defined it before it was keyed."""
    content = {
        "at": entry.at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_username": entry.actor_username,
        "action": entry.action,
        "ip": entry.ip or None,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
    }
    return {**content, **changes}


class Broken(Exception):
    """audit_verify exited non-zero; the message is what it said."""


def verify() -> str:
    """`manage.py audit_verify`: its output when the trail holds; raises Broken with its findings otherwise."""

    class Out:
        text = ""

        def write(self, value):
            self.text += value

    out, err = Out(), Out()
    try:
        call_command("audit_verify", stdout=out, stderr=err)
    except CommandError as exc:
        raise Broken(str(exc)) from None
    return out.text + err.text
