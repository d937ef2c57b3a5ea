"""Manage the engine's script repository: scripts are created outside REST, as in OML."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from omlengine import services
from omlengine.models import EngineScript


class Command(BaseCommand):
    help = "Add, list or remove scripts of the embedded engine's repository."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="Register (or replace) a script from a Python file.")
        add.add_argument("name")
        add.add_argument("file", type=Path)
        add.add_argument("--owner", default="OMLUSER")
        add.add_argument("--description", default="")
        add.add_argument("--global", dest="is_global", action="store_true", help="Visible to every user.")
        actions.add_parser("list", help="List every script.")
        remove = actions.add_parser("remove", help="Remove a script.")
        remove.add_argument("name")
        remove.add_argument("--owner", default="OMLUSER")

    def handle(self, *args, **options):
        getattr(self, f"_{options['action']}")(options)

    def _add(self, options):
        try:
            source = options["file"].read_text()
            script = services.script_save(
                name=options["name"],
                owner=options["owner"],
                source=source,
                description=options["description"],
                is_global=options["is_global"],
            )
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Script {script.name} saved for {script.owner}.")

    def _list(self, options):
        for script in EngineScript.objects.all():
            scope = "global" if script.is_global else "private"
            self.stdout.write(f"{script.name}\t{script.owner}\t{scope}\t{script.description}")

    def _remove(self, options):
        if not services.script_remove(name=options["name"], owner=options["owner"]):
            raise CommandError(f"No script {options['name']} owned by {options['owner'].upper()}.")
        self.stdout.write(f"Script {options['name']} removed.")
