"""AuditEntry moves from the jobs app to its own: the model changes owner, the table and its rows stay.

No database operation runs: the table keeps its name (jobs_auditentry), its rows, its indexes and the append-only
trigger of accounts migration 0002 (extended by jobs migration 0005). jobs migration 0010 removes the model from
the jobs app's state in the same way. The admin's content type and its permissions follow the model.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def _move_content_type(apps, schema_editor, source: str, target: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    if not ContentType.objects.using(db).filter(app_label=target, model="auditentry").exists():
        ContentType.objects.using(db).filter(app_label=source, model="auditentry").update(app_label=target)


def content_type_follows(apps, schema_editor):
    _move_content_type(apps, schema_editor, "jobs", "audit")


def content_type_returns(apps, schema_editor):
    _move_content_type(apps, schema_editor, "audit", "jobs")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("contenttypes", "0002_remove_content_type_name"),
        # The table as the jobs app left it (key_id added by 0005); 0009 is its latest migration.
        ("jobs", "0009_idempotency_key"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.CreateModel(
            name='AuditEntry',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('at', models.DateTimeField()),
                ('actor_username', models.CharField(blank=True, max_length=150)),
                ('action', models.CharField(max_length=40)),
                ('ip', models.GenericIPAddressField(blank=True, null=True)),
                ('target_type', models.CharField(blank=True, max_length=40)),
                ('target_id', models.CharField(blank=True, max_length=64)),
                ('details', models.JSONField(blank=True, default=dict)),
                ('prev_hash', models.CharField(blank=True, max_length=64)),
                ('entry_hash', models.CharField(blank=True, max_length=64)),
                ('key_id', models.CharField(blank=True, help_text="Which AUDIT_HMAC_KEYS key signed the entry (a digest's prefix, not the key); empty: unkeyed.", max_length=16)),
                ('actor', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='audit_entries', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name_plural': 'audit entries',
                'db_table': 'jobs_auditentry',
                'ordering': ['-at', '-id'],
                'indexes': [models.Index(fields=['-at', '-id'], name='audit_time_idx'), models.Index(fields=['actor', '-at', '-id'], name='audit_actor_idx'), models.Index(fields=['action', '-at', '-id'], name='audit_action_idx'), models.Index(fields=['target_id', '-at', '-id'], name='audit_target_idx')],
            },
        )]),
        migrations.RunPython(content_type_follows, content_type_returns),
    ]
