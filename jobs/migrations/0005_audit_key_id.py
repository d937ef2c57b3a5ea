"""Record which AUDIT_HMAC_KEYS key signed each audit entry, and make the append-only trigger cover that column.

Entries already written keep an empty `key_id`: they stay unkeyed SHA-256 entries and verify as before; the
first keyed write after them adds a `chain_keyed` anchor whose HMAC covers their head (jobs.audit).
The trigger comes from accounts migration 0002; this one replaces it with the same rule over one more column.
"""

from django.db import migrations, models

OLD_COLUMNS = ["id", "at", "actor_username", "action", "ip", "target_type", "target_id", "details", "prev_hash", "entry_hash"]
NEW_COLUMNS = [*OLD_COLUMNS, "key_id"]


def postgres_function(columns: list[str]) -> str:
    return f"""
CREATE OR REPLACE FUNCTION jobs_auditentry_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit entries are append-only: delete refused';
    END IF;
    IF ({", ".join("NEW." + c for c in columns)}) IS DISTINCT FROM ({", ".join("OLD." + c for c in columns)})
       OR (NEW.actor_id IS NOT NULL AND NEW.actor_id IS DISTINCT FROM OLD.actor_id) THEN
        RAISE EXCEPTION 'audit entries are append-only: update refused';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""


def sqlite_trigger(columns: list[str]) -> list[str]:
    return [
        "DROP TRIGGER IF EXISTS jobs_auditentry_append_only",
        f"""
CREATE TRIGGER jobs_auditentry_append_only BEFORE UPDATE ON jobs_auditentry
WHEN {" OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in columns)}
     OR (NEW.actor_id IS NOT NULL AND NEW.actor_id IS NOT OLD.actor_id)
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only: update refused');
END;
""",
    ]


def _replace_trigger(schema_editor, columns: list[str]) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(postgres_function(columns))
    elif vendor == "sqlite":
        for statement in sqlite_trigger(columns):
            schema_editor.execute(statement)


def cover_key_id(apps, schema_editor):
    _replace_trigger(schema_editor, NEW_COLUMNS)


def uncover_key_id(apps, schema_editor):
    _replace_trigger(schema_editor, OLD_COLUMNS)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0004_cancel_requested"),
        # The trigger this migration replaces.
        ("accounts", "0002_audit_append_only"),
    ]

    operations = [
        # Backwards, the column goes only after the trigger stops naming it (SQLite refuses to drop it before),
        # and the old trigger is put back in case removing the column rebuilt the table without it.
        migrations.RunPython(migrations.RunPython.noop, uncover_key_id),
        migrations.AddField(
            model_name="auditentry",
            name="key_id",
            field=models.CharField(
                blank=True,
                help_text="Which AUDIT_HMAC_KEYS key signed the entry (a digest's prefix, not the key); empty: unkeyed.",
                max_length=16,
            ),
        ),
        migrations.RunPython(cover_key_id, uncover_key_id),
    ]
