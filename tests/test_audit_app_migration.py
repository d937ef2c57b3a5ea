"""Moving AuditEntry from the jobs app into the audit app keeps every row, the chain and the append-only trigger."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from audit.models import AuditEntry
from audit.services import audit_record, audit_verify_chain

BEFORE_THE_MOVE = [("jobs", "0009_idempotency_key"), ("audit", None)]


def _migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def _latest() -> list[tuple[str, str]]:
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


@pytest.fixture
def settings_with_own_checkpoints(settings, tmp_path):
    settings.AUDIT_CHECKPOINT_DIR = str(tmp_path / "checkpoints")
    return settings


@pytest.mark.django_db(transaction=True)
def test_a_populated_trail_keeps_its_rows_its_chain_and_its_trigger_across_the_move(
    analyst, settings_with_own_checkpoints
):
    _migrate(BEFORE_THE_MOVE)
    try:
        with connection.cursor() as cursor:
            tables = connection.introspection.table_names(cursor)
        assert "jobs_auditentry" in tables
        # Entries written while the table still belonged to the jobs app (same table, same columns).
        for number in range(6):
            audit_record(action="submit", actor=analyst, target_type="job", target_id=f"job-{number}")
        with connection.cursor() as cursor:
            cursor.execute("SELECT id, entry_hash FROM jobs_auditentry ORDER BY id")
            written = cursor.fetchall()
        assert len(written) == 6
    finally:
        _migrate(_latest())

    moved = list(AuditEntry.objects.order_by("id").values_list("id", "entry_hash"))
    assert moved == [tuple(row) for row in written]
    report = audit_verify_chain()
    assert report.broken is None
    assert report.checked == 6

    # The app's own writer goes on from the same chain.
    audit_record(action="cancel", actor=analyst, target_type="job", target_id="job-0")
    assert audit_verify_chain().checked == 7

    if connection.vendor == "postgresql":
        victim = moved[2][0]
        for statement in (
            "UPDATE jobs_auditentry SET target_id = 'rewritten' WHERE id = %s",
            "DELETE FROM jobs_auditentry WHERE id = %s",
        ):
            with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(statement, [victim])
    else:
        # SQLite's trigger refuses updates (deletes stay possible there: test runs empty tables with DELETE).
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE jobs_auditentry SET target_id = 'rewritten' WHERE id = %s", [moved[2][0]])
    assert audit_verify_chain().broken is None
