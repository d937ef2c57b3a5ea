"""Connections are granted to teams. Every connection that exists is granted to every team that exists, so that
nobody loses a connection they used before; from then on administrators grant them (Admin -> Connections)."""

from django.db import migrations, models


def grant_existing_connections(apps, schema_editor):
    Connection = apps.get_model("jobs", "Connection")
    Team = apps.get_model("accounts", "Team")
    alias = schema_editor.connection.alias
    grants = Connection.teams.through
    team_ids = list(Team.objects.using(alias).values_list("pk", flat=True))
    rows = [
        grants(connection_id=connection_id, team_id=team_id)
        for connection_id in Connection.objects.using(alias).values_list("pk", flat=True)
        for team_id in team_ids
    ]
    grants.objects.using(alias).bulk_create(rows, batch_size=1000)


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0002_audit_append_only"),
        ("jobs", "0005_audit_key_id"),
    ]

    operations = [
        migrations.AddField(
            model_name="connection",
            name="teams",
            field=models.ManyToManyField(
                blank=True,
                help_text="The teams whose members may see and use this connection. Administrators may use every one.",
                related_name="connections",
                to="accounts.team",
            ),
        ),
        # Nothing to undo backwards: removing the field drops the grants with their table.
        migrations.RunPython(grant_existing_connections, migrations.RunPython.noop),
    ]
