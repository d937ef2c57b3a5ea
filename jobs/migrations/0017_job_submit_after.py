"""A queued job's retry time and the sweep's claim on it get a column of their own (`submit_after`), so that
`next_poll_at` means one thing only: when a pending job is polled next."""

from django.db import migrations, models


def move_queued_times(apps, schema_editor):
    Job = apps.get_model("jobs", "Job")
    queued = Job.objects.filter(state="queued", next_poll_at__isnull=False)
    queued.update(submit_after=models.F("next_poll_at"))
    queued.update(next_poll_at=None)


def move_back(apps, schema_editor):
    Job = apps.get_model("jobs", "Job")
    queued = Job.objects.filter(state="queued", submit_after__isnull=False)
    queued.update(next_poll_at=models.F("submit_after"))


class Migration(migrations.Migration):
    dependencies = [("jobs", "0016_rollup_purged_hour_index")]

    operations = [
        migrations.AddField(
            model_name="job",
            name="submit_after",
            field=models.DateTimeField(
                blank=True,
                help_text="Queued jobs only: not submitted by the sweep before this (a refusal's retry time, or a "
                "sweep's claim on it).",
                null=True,
            ),
        ),
        migrations.AlterField(
            model_name="job",
            name="next_poll_at",
            field=models.DateTimeField(
                blank=True, help_text="Pending jobs only: when the sweep next asks OML about the job.", null=True
            ),
        ),
        migrations.RunPython(move_queued_times, move_back, elidable=True),
    ]
