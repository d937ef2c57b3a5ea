"""The audit trail's keys: rotation keeps old entries verifiable, entries from before the chain was keyed still
verify and are anchored by the first keyed write, and a production start refuses missing or weak keys."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.test import override_settings
from django.utils import timezone

from audit.models import AuditEntry
from audit.services import GENESIS_HASH, AuditAction, audit_record, audit_verify_chain
from omlpy_dashboard.secrets_check import audit_key_id
from tests.audit_support import Broken, content_of, entries, plain_sha256, tamper, verify
from tests.stack import ROOT
from tests.test_settings_refusals import start

OLD_KEY = "old-audit-key-7f3a91c2e5d84b06a1f93c7e2d5b8a40"
NEW_KEY = "new-audit-key-2b8e6d1f4a9c37e05d2f8b6a1c4e9d73"


@pytest.fixture(autouse=True)
def _own_checkpoints(settings, tmp_path):
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path / "checkpoints")


@pytest.mark.django_db
def test_entries_signed_with_an_old_key_still_verify_when_it_follows_the_new_one(analyst):
    with override_settings(AUDIT_HMAC_KEYS=[OLD_KEY]):
        old = entries(analyst, 3)
    with override_settings(AUDIT_HMAC_KEYS=[NEW_KEY, OLD_KEY]):
        new = entries(analyst, 2)
        assert "intact: 5 entries" in verify()
    assert {e.key_id for e in old} == {audit_key_id(OLD_KEY)}
    assert {e.key_id for e in new} == {audit_key_id(NEW_KEY)}
    assert new[0].prev_hash == old[-1].entry_hash


@pytest.mark.django_db
def test_dropping_a_key_that_signed_entries_makes_audit_verify_name_the_first_of_them(analyst):
    with override_settings(AUDIT_HMAC_KEYS=[OLD_KEY]):
        old = entries(analyst, 2)
    with override_settings(AUDIT_HMAC_KEYS=[NEW_KEY]):
        entries(analyst, 1)
        with pytest.raises(Broken, match=rf"entry #{old[0].pk}\b.*signed with key {audit_key_id(OLD_KEY)}, which"):
            verify()


def _unkeyed_entries(count: int) -> list[AuditEntry]:
    """Entries as the trail wrote them before it was keyed: no key id, a plain SHA-256 chained from genesis."""
    written: list[AuditEntry] = []
    prev = GENESIS_HASH
    for n in range(count):
        entry = AuditEntry(
            at=timezone.now(), actor_username="old", action="submit", target_type="job", target_id=f"old-{n}"
        )
        entry.details = {"n": n}
        entry.prev_hash = prev
        entry.entry_hash = plain_sha256(content_of(entry))
        entry.save()
        written.append(entry)
        prev = entry.entry_hash
    return written


@pytest.mark.django_db
def test_unkeyed_entries_from_before_still_verify(analyst):
    _unkeyed_entries(3)
    assert "intact: 3 entries" in verify()


@pytest.mark.django_db
def test_the_first_keyed_write_after_unkeyed_entries_anchors_their_head(analyst, settings):
    legacy = _unkeyed_entries(3)
    entry = audit_record(action="submit", actor=analyst, target_id="new")
    anchor = AuditEntry.objects.get(action=AuditAction.CHAIN_KEYED)
    assert anchor.prev_hash == legacy[-1].entry_hash
    assert anchor.details == {"unkeyed_head": legacy[-1].entry_hash}
    assert anchor.key_id == entry.key_id == audit_key_id(settings.AUDIT_HMAC_KEYS[0])
    assert entry.prev_hash == anchor.entry_hash
    audit_record(action="submit", actor=analyst, target_id="newer")
    assert AuditEntry.objects.filter(action=AuditAction.CHAIN_KEYED).count() == 1
    assert "intact: 6 entries" in verify()


@pytest.mark.django_db
def test_unkeyed_entries_rewritten_consistently_are_caught_at_the_anchor(analyst):
    legacy = _unkeyed_entries(3)
    audit_record(action="submit", actor=analyst, target_id="new")
    anchor = AuditEntry.objects.get(action=AuditAction.CHAIN_KEYED)
    # Without a key, every unkeyed hash can be recomputed: the rewritten part holds on its own.
    prev = GENESIS_HASH
    for entry in legacy:
        rewritten = plain_sha256(content_of(entry, target_id="rewritten", prev_hash=prev))
        tamper(
            "UPDATE jobs_auditentry SET target_id = 'rewritten', prev_hash = %s, entry_hash = %s WHERE id = %s",
            [prev, rewritten, entry.pk],
        )
        prev = rewritten
    report = audit_verify_chain()
    assert report.broken is not None
    assert report.broken.entry_id == anchor.pk
    assert report.intact == 3


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("", "AUDIT_HMAC_KEYS must be set when DEBUG is off"),
        ("too-short-key", "AUDIT_HMAC_KEYS: key 1 is refused: it has 13 characters; at least 32 are needed"),
        (
            f"{NEW_KEY},replace-me-with-a-real-key-0123456789abc",
            "AUDIT_HMAC_KEYS: key 2 is refused: it is a placeholder",
        ),
        (f"{NEW_KEY},{NEW_KEY}", "AUDIT_HMAC_KEYS lists the same key twice"),
    ],
)
def test_a_production_start_refuses_missing_or_weak_audit_keys(keys, message):
    done = start(AUDIT_HMAC_KEYS=keys)
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr
    assert message in done.stderr, done.stderr[-1500:]


def test_a_production_start_refuses_a_checkpoint_interval_that_is_not_positive():
    done = start(AUDIT_CHECKPOINT_INTERVAL="0")
    assert done.returncode != 0
    assert "AUDIT_CHECKPOINT_INTERVAL must be positive" in done.stderr


def test_a_development_start_keeps_a_generated_key_under_var_dir(tmp_path):
    env = {name: value for name, value in os.environ.items() if name != "AUDIT_HMAC_KEYS"}
    env.update(DEBUG="true", VAR_DIR=str(tmp_path))
    script = "import django; django.setup(); from django.conf import settings; print(settings.AUDIT_HMAC_KEYS[0])"
    runs = [
        subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        for _ in range(2)
    ]
    assert [run.returncode for run in runs] == [0, 0], runs[0].stderr
    key = (tmp_path / "dev-audit-hmac-key").read_text().strip()
    assert len(key) >= 32
    assert [run.stdout.strip() for run in runs] == [key, key]
