from django.db import models


class MetricCounter(models.Model):
    """The running total of one series of a counter or histogram (metrics.catalog), across every process.

    Only metrics.store.flush writes here, adding to `value` (a series seen for the first time is created);
    nothing ever lowers it.
    """

    name = models.CharField(max_length=100)
    labels = models.CharField(max_length=500, help_text="The series' labels as canonical JSON.")
    value = models.FloatField(default=0.0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "labels"], name="metric_counter_series_unique")]

    def __str__(self) -> str:
        return f"{self.name}{self.labels} = {self.value}"
