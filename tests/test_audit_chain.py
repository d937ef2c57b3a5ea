"""The audit trail is a hash chain: untouched it verifies, any edited or removed row is named."""

from __future__ import annotations

import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import close_old_connections, connection

from jobs.audit import GENESIS_HASH, audit_record, audit_verify_chain
from jobs.models import AuditEntry, AuditEntryImmutableError


def _entries(actor, count: int = 5) -> list[AuditEntry]:
    return [
        audit_record(action="submit", actor=actor, target_type="job", target_id=f"job-{n}", details={"n": n})
        for n in range(count)
    ]


def _tamper(sql: str, params: list) -> None:
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


def _verify() -> str:
    try:
        call_command("audit_verify", stdout=(out := _Out()))
    except CommandError as exc:
        raise _Broken(str(exc)) from None
    return out.text


class _Out:
    text = ""

    def write(self, value):
        self.text += value


class _Broken(Exception):
    pass


def test_each_entry_chains_to_the_one_before_it(analyst):
    entries = _entries(analyst, 3)
    assert entries[0].prev_hash == GENESIS_HASH
    assert [e.prev_hash for e in entries[1:]] == [e.entry_hash for e in entries[:-1]]
    assert len({e.entry_hash for e in entries}) == 3


def test_an_untouched_chain_passes_audit_verify(analyst):
    _entries(analyst, 5)
    assert "intact: 5 entries" in _verify()


def test_editing_one_row_with_raw_sql_makes_audit_verify_fail_naming_that_row(analyst):
    entries = _entries(analyst, 5)
    victim = entries[2]
    _tamper("UPDATE jobs_auditentry SET target_id = %s WHERE id = %s", ["someone-else", victim.pk])
    with pytest.raises(_Broken, match=rf"entry #{victim.pk}\b.*content does not match its hash"):
        _verify()


def test_editing_a_row_and_its_hash_is_caught_at_the_next_row(analyst):
    entries = _entries(analyst, 4)
    _tamper("UPDATE jobs_auditentry SET action = %s, entry_hash = %s WHERE id = %s", ["login", "f" * 64, entries[1].pk])
    report = audit_verify_chain()
    # The forged hash no longer covers the content, so the edited row itself is named.
    assert report.broken is not None
    assert report.broken.entry_id == entries[1].pk


def test_deleting_one_row_with_raw_sql_makes_audit_verify_fail_at_the_row_after_the_gap(analyst):
    entries = _entries(analyst, 5)
    _tamper("DELETE FROM jobs_auditentry WHERE id = %s", [entries[2].pk])
    with pytest.raises(_Broken, match=rf"entry #{entries[3].pk}\b.*removed or altered"):
        _verify()


def test_the_application_refuses_to_change_or_delete_an_entry(analyst):
    entry = _entries(analyst, 1)[0]
    entry.action = "cancel"
    with pytest.raises(AuditEntryImmutableError):
        entry.save()
    with pytest.raises(AuditEntryImmutableError):
        entry.delete()
    with pytest.raises(AuditEntryImmutableError):
        AuditEntry.objects.filter(pk=entry.pk).update(action="cancel")
    with pytest.raises(AuditEntryImmutableError):
        AuditEntry.objects.filter(pk=entry.pk).delete()
    assert AuditEntry.objects.get(pk=entry.pk).action == "submit"


def test_the_database_refuses_a_raw_update_of_an_entry(analyst):
    from django.db import DatabaseError, transaction

    entry = _entries(analyst, 1)[0]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE jobs_auditentry SET action = 'cancel' WHERE id = %s", [entry.pk])
    assert AuditEntry.objects.get(pk=entry.pk).action == "submit"


def test_deleting_a_user_keeps_their_entries_and_the_chain(make_user):
    user = make_user("leaver")
    _entries(user, 3)
    user.delete()
    kept = AuditEntry.objects.order_by().values_list("actor_id", "actor_username").distinct()
    assert list(kept) == [(None, "leaver")]
    assert audit_verify_chain().ok


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_keep_the_chain_linear(make_user):
    user = make_user("busy")
    errors: list[Exception] = []

    def append(worker: int) -> None:
        try:
            for n in range(15):
                audit_record(action="submit", actor=user, target_id=f"{worker}-{n}")
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=append, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    report = audit_verify_chain()
    assert report.ok, report.broken
    assert report.checked == 60
    hashes = list(AuditEntry.objects.order_by("id").values_list("prev_hash", flat=True))
    assert len(set(hashes)) == 60  # no two entries claim the same predecessor: the chain never forked
