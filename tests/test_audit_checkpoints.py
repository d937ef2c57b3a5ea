"""Signed checkpoints of the audit chain's head, outside the database: the task writes files whose HMAC verifies,
beat schedules it, and audit_verify notices a chain cut back past the newest checkpoint."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from audit.models import AuditEntry
from audit.tasks import audit_checkpoint
from tests.audit_support import Broken, entries, tamper, verify
from tests.stack import ROOT, Stack, wait_for
from tests.stack import test_database_url as database_url


@pytest.fixture
def checkpoint_dir(settings, tmp_path) -> Path:
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path / "checkpoints")
    return tmp_path / "checkpoints"


def _files(directory: Path) -> list[Path]:
    return sorted(directory.glob("audit-checkpoint-*.json"))


def _signature_holds(payload: dict, key: str) -> bool:
    signed = {name: value for name, value in payload.items() if name != "hmac"}
    text = json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()
    return hmac.compare_digest(hmac.new(key.encode(), text, hashlib.sha256).hexdigest(), payload["hmac"])


def _write_checkpoint() -> Path:
    # The task's own code, run in this process (a worker runs it the same way; see the end-to-end test below).
    return Path(audit_checkpoint.apply().get())


@pytest.mark.django_db
def test_the_checkpoint_task_writes_the_chains_head_in_a_file_whose_hmac_verifies(analyst, checkpoint_dir):
    written = entries(analyst, 3)
    path = _write_checkpoint()
    assert _files(checkpoint_dir) == [path]
    payload = json.loads(path.read_text())
    key = settings.AUDIT_HMAC_KEYS[0]
    assert _signature_holds(payload, key)
    assert (payload["count"], payload["last_id"], payload["head"]) == (3, written[-1].pk, written[-1].entry_hash)
    assert payload["key_id"] == hashlib.sha256(key.encode()).hexdigest()[:8]
    assert key not in path.read_text()
    assert not _signature_holds({**payload, "count": 2}, key)
    assert list(checkpoint_dir.glob(".writing-*")) == []


@pytest.mark.django_db
def test_only_the_newest_checkpoints_are_kept(analyst, checkpoint_dir, settings):
    settings.AUDIT_CHECKPOINT_KEEP = 2
    paths = []
    for _ in range(4):
        entries(analyst, 1)
        paths.append(_write_checkpoint())
    assert _files(checkpoint_dir) == paths[-2:]
    assert [json.loads(p.read_text())["count"] for p in _files(checkpoint_dir)] == [3, 4]


@pytest.mark.django_db
def test_a_chain_that_holds_against_its_checkpoint_passes_audit_verify(analyst, checkpoint_dir):
    entries(analyst, 4)
    _write_checkpoint()
    entries(analyst, 1)
    output = verify()
    assert "intact: 5 entries" in output
    assert "(4 entries, key " in output


@pytest.mark.django_db
def test_removing_the_newest_entries_past_the_last_checkpoint_fails_audit_verify(analyst, checkpoint_dir):
    written = entries(analyst, 5)
    _write_checkpoint()
    assert "intact: 5 entries" in verify()
    tamper("DELETE FROM jobs_auditentry WHERE id >= %s", [written[3].pk])
    with pytest.raises(Broken, match=r"The chain ends at 3 entries but the checkpoint of \d{4}-.* UTC saw 5 entries"):
        verify()


@pytest.mark.django_db
def test_entries_written_after_the_last_checkpoint_can_be_removed_unnoticed(analyst, checkpoint_dir):
    # The limit README states: nothing vouches for entries newer than the newest checkpoint.
    written = entries(analyst, 3)
    _write_checkpoint()
    later = entries(analyst, 2)
    tamper("DELETE FROM jobs_auditentry WHERE id >= %s", [later[0].pk])
    assert "intact: 3 entries" in verify()
    assert AuditEntry.objects.order_by("-id").first().pk == written[-1].pk


@pytest.mark.django_db
def test_an_altered_checkpoint_is_reported(analyst, checkpoint_dir):
    entries(analyst, 3)
    path = _write_checkpoint()
    payload = json.loads(path.read_text())
    path.write_text(json.dumps({**payload, "count": 1}))
    with pytest.raises(Broken, match=rf"Checkpoint {path.name} does not match its signature"):
        verify()


@pytest.mark.django_db
def test_audit_verify_without_a_checkpoint_says_that_truncation_would_go_unnoticed(analyst, checkpoint_dir):
    entries(analyst, 2)
    output = verify()
    assert "intact: 2 entries" in output
    assert "No checkpoint in" in output


@pytest.fixture
def signed_entries_committed(transactional_db, analyst):
    """Entries other processes can see (committed), for the tests that start them."""
    return entries(analyst, 3)


def test_a_worker_with_beat_writes_checkpoints_on_the_configured_interval(signed_entries_committed, tmp_path):
    directory = tmp_path / "checkpoints"
    queue = f"audit-{uuid.uuid4().hex[:10]}"
    env = {"CELERY_QUEUE": queue, "AUDIT_CHECKPOINT_INTERVAL": "0.3", "AUDIT_CHECKPOINT_DIR": str(directory)}
    stack = Stack(log_dir=tmp_path / "logs", env=env)
    try:
        stack.start_worker(beat=True, concurrency=1)
        wait_for(lambda: len(_files(directory)) >= 2, timeout=90, what="two checkpoints from the worker")
    finally:
        stack.stop()
    newest = json.loads(_files(directory)[-1].read_text())
    assert _signature_holds(newest, settings.AUDIT_HMAC_KEYS[0])
    head = signed_entries_committed[-1]
    assert (newest["count"], newest["last_id"], newest["head"]) == (3, head.pk, head.entry_hash)


def test_audit_verify_exits_non_zero_on_a_finding(signed_entries_committed, tmp_path):
    # As an operator or a cron job sees it: the command's exit status, here with the signing key left out.
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "AUDIT_HMAC_KEYS": "another-key-than-the-one-that-signed-the-entries-0123",
        "AUDIT_CHECKPOINT_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "audit_verify"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    first = signed_entries_committed[0]
    assert f"entry #{first.pk}" in done.stderr
    assert f"signed with key {first.key_id}, which AUDIT_HMAC_KEYS does not list" in done.stderr
