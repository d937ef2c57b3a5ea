"""API tokens expire and carry a scope. Tokens that exist keep working as before (read-write) and expire
API_TOKEN_DEFAULT_DAYS (90 unless configured) after this migration runs."""

from datetime import timedelta

from django.conf import settings
from django.db import migrations, models
from django.utils import timezone


def expire_existing_tokens(apps, schema_editor):
    ApiToken = apps.get_model("accounts", "ApiToken")
    expires_at = timezone.now() + timedelta(days=settings.API_TOKEN_DEFAULT_DAYS)
    ApiToken.objects.using(schema_editor.connection.alias).filter(expires_at__isnull=True).update(
        expires_at=expires_at
    )


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0004_oidc_identity"),
    ]

    operations = [
        migrations.AddField(
            model_name="apitoken",
            name="scope",
            field=models.CharField(
                choices=[("read_write", "Read and write"), ("read_only", "Read only")],
                default="read_write",
                max_length=10,
            ),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(null=True, help_text="The API refuses the token from this moment on."),
        ),
        migrations.RunPython(expire_existing_tokens, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(help_text="The API refuses the token from this moment on."),
        ),
        migrations.AddConstraint(
            model_name="apitoken",
            constraint=models.CheckConstraint(
                condition=models.Q(("scope__in", ["read_write", "read_only"])), name="api_token_scope_valid"
            ),
        ),
    ]
