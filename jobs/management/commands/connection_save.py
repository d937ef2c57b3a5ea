"""`manage.py connection_save NAME BASE_URL USERNAME`: add or change an OML connection from a shell.

The password is read from standard input (never from the command line, where `ps` and shell history would
keep it), or from the environment variable named by --password-env. The change is audited like one made in
the admin, with the operator's name as the actor's. `--team NAME` (repeatable) or `--all-teams` sets the teams
the connection is granted to; without either, a connection keeps its grants and a new one has none (only
administrators may use it until it is granted).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Team
from audit.services import AuditAction, audit_record
from jobs.models import Connection
from jobs.services.jobs import connection_save


class Command(BaseCommand):
    help = "Add or change an OML connection; the password comes from standard input or --password-env."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("base_url", help="e.g. https://<tenancy>-<db>.adb.<region>.oraclecloudapps.com")
        parser.add_argument("username", help="the OML user name")
        parser.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable")
        parser.add_argument("--api-version", choices=[v.value for v in Connection.ApiVersion], default="v2")
        parser.add_argument("--poll-budget", type=int, default=20, help="status requests per second (default 20)")
        parser.add_argument("--default", action="store_true", help="preselect it for analysts")
        grants = parser.add_mutually_exclusive_group()
        grants.add_argument(
            "--team", action="append", metavar="NAME", help="grant it to this team (repeat for more); replaces grants"
        )
        grants.add_argument("--all-teams", action="store_true", help="grant it to every team that exists now")

    def handle(self, *args: Any, **options: Any) -> None:
        existing = Connection.objects.filter(name=options["name"]).first()
        teams = self._teams(options["team"], options["all_teams"])
        password = self._password(options["password_env"], required=existing is None)
        try:
            saved = connection_save(
                connection=existing,
                name=options["name"],
                base_url=options["base_url"],
                username=options["username"],
                password=password,
                api_version=options["api_version"],
                poll_budget=options["poll_budget"],
                poll_strategy=existing.poll_strategy if existing else "",
                is_default=options["default"],
                teams=teams,
            )
        except (ValidationError, ValueError) as exc:
            raise CommandError(f"connection not saved: {exc}") from exc
        granted = sorted(saved.teams.values_list("name", flat=True))
        audit_record(
            action=AuditAction.CONNECTION_CHANGED if existing else AuditAction.CONNECTION_CREATED,
            target_type="connection",
            target_id=str(saved.pk),
            details={
                "name": saved.name,
                "base_url": saved.base_url,
                "via": "manage.py connection_save",
                "teams": granted,
            },
        )
        self.stdout.write(f"connection {saved.name!r} {'changed' if existing else 'created'}: {saved.base_url}")
        self.stdout.write(
            f"granted to: {', '.join(granted)}" if granted else "granted to no team: only administrators may use it"
        )

    def _teams(self, names: list[str] | None, all_teams: bool) -> list[Team] | None:
        if all_teams:
            return list(Team.objects.all())
        if not names:
            return None
        teams = list(Team.objects.filter(name__in=names))
        missing = sorted(set(names) - {team.name for team in teams})
        if missing:
            raise CommandError(f"no team named {', '.join(repr(name) for name in missing)}; nothing was changed")
        return teams

    def _password(self, variable: str | None, *, required: bool) -> str | None:
        if variable:
            password = os.environ.get(variable, "")
            if not password:
                raise CommandError(f"the environment variable {variable} is empty or unset")
            return password
        if sys.stdin.isatty():
            from getpass import getpass

            password = getpass("OML password (empty keeps the stored one): " if not required else "OML password: ")
        else:
            password = sys.stdin.readline().rstrip("\n")
        if not password and required:
            raise CommandError("a new connection needs a password")
        return password or None
