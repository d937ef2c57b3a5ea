"""`manage.py sweep_probe --max-age SECONDS`: the worker's and beat's health probe.

Exits 0 when a poll sweep completed within the last SECONDS, 1 otherwise (none recorded, too old, or the
shared cache unreachable), printing the age either way. A stopped beat schedules no sweeps, and workers that
cannot reach the database or OML complete none: both show here as a growing age.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from omlpy_dashboard import health


class Command(BaseCommand):
    help = "Exit 0 if a poll sweep completed within --max-age seconds, 1 otherwise."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--max-age", type=float, default=120.0, help="seconds (default 120)")

    def handle(self, *args: Any, max_age: float, **options: Any) -> None:
        if max_age <= 0:
            raise CommandError("--max-age must be positive")
        try:
            age = health.sweep_age()
        except Exception as exc:  # the probe's answer is the exit code, not a traceback
            raise CommandError(f"unhealthy: the shared cache cannot be read ({exc.__class__.__name__})") from exc
        if age is None:
            raise CommandError("unhealthy: no poll sweep has completed yet")
        if age > max_age:
            raise CommandError(f"unhealthy: the last poll sweep completed {age:.1f} s ago (limit {max_age:g} s)")
        self.stdout.write(f"ok: the last poll sweep completed {age:.1f} s ago")
