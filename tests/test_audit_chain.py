"""The audit trail is a signed hash chain: untouched it verifies, any edited, inserted or removed row is named."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading

import pytest
from django.db import close_old_connections, connection

from audit.models import AuditEntry, AuditEntryImmutableError
from audit.services import GENESIS_HASH, audit_record, audit_verify_chain
from tests.audit_support import Broken as _Broken
from tests.audit_support import content_of, plain_sha256
from tests.audit_support import entries as _entries
from tests.audit_support import tamper as _tamper
from tests.audit_support import verify as _verify


@pytest.fixture(autouse=True)
def _own_checkpoints(settings, tmp_path):
    """No checkpoint but this test's: a worker of another test may write some to the default folder."""
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path / "checkpoints")


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


# --- Keyed: what someone with the database but without the key cannot do unnoticed ----------------------


def test_entries_are_signed_with_the_first_key_and_record_only_its_id(analyst, settings):
    key = settings.AUDIT_HMAC_KEYS[0]
    written = _entries(analyst, 2)
    assert {e.key_id for e in written} == {hashlib.sha256(key.encode()).hexdigest()[:8]}
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM jobs_auditentry")
        stored = repr(cursor.fetchall())
    assert key not in stored


def test_an_entry_rehashed_without_the_key_is_named(analyst):
    written = _entries(analyst, 4)
    victim = written[1]
    # The edit and a fresh SHA-256 over the new content, as the chain was hashed before it was keyed.
    forged = plain_sha256({**content_of(victim, target_id="someone-else"), "key_id": victim.key_id})
    _tamper(
        "UPDATE jobs_auditentry SET target_id = %s, entry_hash = %s WHERE id = %s", ["someone-else", forged, victim.pk]
    )
    with pytest.raises(_Broken, match=rf"entry #{victim.pk}\b.*content does not match its hash"):
        _verify()


def test_an_entry_made_unsigned_among_signed_ones_is_named(analyst):
    written = _entries(analyst, 4)
    victim = written[2]
    forged = plain_sha256(content_of(victim, target_id="someone-else"))
    _tamper(
        "UPDATE jobs_auditentry SET target_id = %s, entry_hash = %s, key_id = '' WHERE id = %s",
        ["someone-else", forged, victim.pk],
    )
    with pytest.raises(_Broken, match=rf"entry #{victim.pk}\b.*not signed, yet signed entries come before it"):
        _verify()


_COLUMNS = "at, actor_id, actor_username, action, ip, target_type, target_id, details, prev_hash, entry_hash, key_id"


def _open_a_gap_after(entry: AuditEntry) -> int:
    """Move the entries after `entry` up, leaving room for one row in between; the id of that room."""
    _tamper("UPDATE jobs_auditentry SET id = id + 1000 WHERE id > %s", [entry.pk])
    return entry.pk + 1


def test_a_copy_of_a_signed_entry_inserted_in_the_middle_is_named(analyst):
    written = _entries(analyst, 5)
    gap = _open_a_gap_after(written[2])
    # A genuine signature, replayed: the copy of an earlier entry, key id and HMAC included.
    _tamper(
        f"INSERT INTO jobs_auditentry (id, {_COLUMNS}) SELECT %s, {_COLUMNS} FROM jobs_auditentry WHERE id = %s",  # noqa: S608
        [gap, written[1].pk],
    )
    with pytest.raises(_Broken, match=rf"entry #{gap}\b.*this one was inserted"):
        _verify()


def test_an_entry_forged_with_another_key_and_inserted_in_the_middle_is_named(analyst):
    written = _entries(analyst, 5)
    gap = _open_a_gap_after(written[2])
    before = written[2]
    content = {**content_of(before, target_id="forged", prev_hash=before.entry_hash), "key_id": before.key_id}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    signature = hmac.new(b"a key the attacker made up for the occasion", text, "sha256").hexdigest()
    _tamper(
        f"INSERT INTO jobs_auditentry (id, {_COLUMNS}) "  # noqa: S608
        "SELECT %s, at, actor_id, actor_username, action, ip, target_type, 'forged', details, %s, %s, key_id "
        "FROM jobs_auditentry WHERE id = %s",
        [gap, before.entry_hash, signature, before.pk],
    )
    with pytest.raises(_Broken, match=rf"entry #{gap}\b.*content does not match its hash"):
        _verify()
    # The entry after it no longer follows the one before it either; the first break is the one named.
    assert audit_verify_chain().broken.entry_id == gap


def _rehash_from(first_id: int) -> None:
    """Re-chain every entry from `first_id` on with plain SHA-256, as someone without the key can: each one's
    previous hash and hash made consistent again, its key id kept so that it still looks signed."""
    previous = AuditEntry.objects.filter(id__lt=first_id).order_by("-id").first()
    prev = previous.entry_hash if previous else GENESIS_HASH
    for entry in AuditEntry.objects.filter(id__gte=first_id).order_by("id"):
        rehashed = plain_sha256({**content_of(entry, prev_hash=prev), "key_id": entry.key_id})
        _tamper("UPDATE jobs_auditentry SET prev_hash = %s, entry_hash = %s WHERE id = %s", [prev, rehashed, entry.pk])
        prev = rehashed


def _edit(written: list[AuditEntry]) -> int:
    _tamper("UPDATE jobs_auditentry SET target_id = 'someone-else' WHERE id = %s", [written[2].pk])
    return written[2].pk


def _insert(written: list[AuditEntry]) -> int:
    gap = _open_a_gap_after(written[2])
    _tamper(
        f"INSERT INTO jobs_auditentry (id, {_COLUMNS}) SELECT %s, {_COLUMNS} FROM jobs_auditentry WHERE id = %s",  # noqa: S608
        [gap, written[0].pk],
    )
    return gap


def _delete(written: list[AuditEntry]) -> int:
    _tamper("DELETE FROM jobs_auditentry WHERE id = %s", [written[2].pk])
    return written[3].pk


@pytest.mark.parametrize("change", [_edit, _insert, _delete], ids=["edited", "inserted", "deleted"])
def test_a_change_with_the_rest_of_the_chain_rehashed_without_the_key_is_named(analyst, change):
    written = _entries(analyst, 5)
    first_changed = change(written)
    _rehash_from(first_changed)
    with pytest.raises(_Broken, match=rf"entry #{first_changed}\b.*content does not match its hash"):
        _verify()
