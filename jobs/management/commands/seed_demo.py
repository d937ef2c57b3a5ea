"""Seed a development database: demo accounts, the demo team and the default connection, only when absent."""

import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Membership, Team
from jobs.models import Connection
from jobs.services.jobs import connection_save

DEMO_USERS = [
    # username, password, is_staff/superuser, role in the demo team
    ("analyst", "analyst", False, Membership.Role.ANALYST),
    ("lead", "lead", False, Membership.Role.LEAD),
    ("auditor", "auditor", False, Membership.Role.AUDITOR),
    ("admin", "admin", True, None),
]


# The embedded engine's documented demo user (DESIGN.md); only ever seeded with the engine switched on.
ENGINE_DEMO_USER = "OMLUSER"
ENGINE_DEMO_PASSWORD = "omluser"  # noqa: S105


class Command(BaseCommand):
    help = "Seed demo accounts (only with DEBUG on and no users yet) and the default connection (only when absent)."

    def handle(self, *args, **options):
        with transaction.atomic():
            self._seed_users()
            self._seed_connection()
        if settings.OMLENGINE_ENABLED and "omlengine_seed" in _commands():
            call_command("omlengine_seed")

    def _seed_users(self) -> None:
        User = get_user_model()
        if User.objects.exists():
            return
        if not settings.DEBUG:
            self.stdout.write("DEBUG is off: no demo accounts are seeded. Create users with createsuperuser.")
            return
        team, _ = Team.objects.get_or_create(name="Demo team")
        for username, password, is_admin, role in DEMO_USERS:
            user = User.objects.create_user(username=username, password=password)
            if is_admin:
                user.is_staff = user.is_superuser = True
                user.save(update_fields=["is_staff", "is_superuser"])
            if role:
                Membership.objects.create(user=user, team=team, role=role)
        self.stdout.write("Seeded demo accounts: analyst/analyst, lead/lead, auditor/auditor, admin/admin.")

    def _seed_connection(self) -> None:
        if not settings.OMLENGINE_ENABLED or Connection.objects.exists():
            return
        url = settings.DEFAULT_CONNECTION_URL or f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"
        connection_save(
            name="Embedded engine",
            base_url=url,
            username=ENGINE_DEMO_USER,
            password=ENGINE_DEMO_PASSWORD,
            is_default=True,
            # Connections are granted to teams: the demo team's analysts may use it.
            teams=Team.objects.all(),
        )
        self.stdout.write(f"Seeded the default connection 'Embedded engine' at {url}.")


def _commands() -> set[str]:
    from django.core.management import get_commands

    return set(get_commands())
