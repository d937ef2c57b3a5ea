"""Make the audit trail append-only in the database, and chain any entries written before the chain existed.

On PostgreSQL a trigger refuses UPDATE and DELETE of jobs_auditentry rows, except the NULLing of `actor_id`
that deleting a user performs. On SQLite a trigger refuses updates; deletes stay possible there because test
runs empty tables with DELETE (PostgreSQL uses TRUNCATE, which row triggers do not see).
"""

from django.db import migrations

COLUMNS = ["id", "at", "actor_username", "action", "ip", "target_type", "target_id", "details", "prev_hash", "entry_hash"]

POSTGRES_FORWARD = f"""
CREATE OR REPLACE FUNCTION jobs_auditentry_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit entries are append-only: delete refused';
    END IF;
    IF ({", ".join("NEW." + c for c in COLUMNS)}) IS DISTINCT FROM ({", ".join("OLD." + c for c in COLUMNS)})
       OR (NEW.actor_id IS NOT NULL AND NEW.actor_id IS DISTINCT FROM OLD.actor_id) THEN
        RAISE EXCEPTION 'audit entries are append-only: update refused';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER jobs_auditentry_append_only BEFORE UPDATE OR DELETE ON jobs_auditentry
    FOR EACH ROW EXECUTE FUNCTION jobs_auditentry_append_only();
"""
POSTGRES_BACKWARD = """
DROP TRIGGER IF EXISTS jobs_auditentry_append_only ON jobs_auditentry;
DROP FUNCTION IF EXISTS jobs_auditentry_append_only();
"""

SQLITE_FORWARD = f"""
CREATE TRIGGER jobs_auditentry_append_only BEFORE UPDATE ON jobs_auditentry
WHEN {" OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in COLUMNS)}
     OR (NEW.actor_id IS NOT NULL AND NEW.actor_id IS NOT OLD.actor_id)
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only: update refused');
END;
"""
SQLITE_BACKWARD = "DROP TRIGGER IF EXISTS jobs_auditentry_append_only;"


def chain_existing_entries(apps, schema_editor):
    from audit.services import GENESIS_HASH, compute_hash

    AuditEntry = apps.get_model("jobs", "AuditEntry")
    prev = GENESIS_HASH
    for entry in AuditEntry.objects.using(schema_editor.connection.alias).order_by("id").iterator():
        entry.prev_hash = prev
        entry.entry_hash = compute_hash(entry)
        AuditEntry.objects.using(schema_editor.connection.alias).filter(pk=entry.pk).update(
            prev_hash=entry.prev_hash, entry_hash=entry.entry_hash
        )
        prev = entry.entry_hash


def add_trigger(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    sql = {"postgresql": POSTGRES_FORWARD, "sqlite": SQLITE_FORWARD}.get(vendor)
    if sql:
        if vendor == "sqlite":
            schema_editor.execute(sql)
        else:
            with schema_editor.connection.cursor() as cursor:
                cursor.execute(sql)


def remove_trigger(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    sql = {"postgresql": POSTGRES_BACKWARD, "sqlite": SQLITE_BACKWARD}.get(vendor)
    if sql:
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("jobs", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(chain_existing_entries, migrations.RunPython.noop),
        migrations.RunPython(add_trigger, remove_trigger),
    ]
