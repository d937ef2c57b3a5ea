"""Seed the engine: the demo user, the sample scripts of seed_scripts/, and the data database's tables."""

import ast
from pathlib import Path

from django.core.management.base import BaseCommand
from django.db import transaction

from omlengine import data, services

SEED_DIR = Path(__file__).resolve().parents[2] / "seed_scripts"
DEMO_USER, DEMO_PASSWORD = "OMLUSER", "omluser"


class Command(BaseCommand):
    help = "Seed the embedded engine (demo user, sample scripts, sample tables). Safe to run repeatedly."

    def handle(self, *args, **options):
        with transaction.atomic():
            if services.user_ensure(username=DEMO_USER, password=DEMO_PASSWORD):
                self.stdout.write(f"Engine user {DEMO_USER} created.")
            for path in sorted(SEED_DIR.glob("*.py")):
                source = path.read_text()
                services.script_save(
                    name=path.stem, owner=DEMO_USER, source=source, description=_docstring(source), is_global=True
                )
        tables = data.seed()
        if tables:
            self.stdout.write(f"Engine data tables loaded: {', '.join(tables)}.")
        if options["verbosity"] > 1:
            self.stdout.write("Engine seeded.")


def _docstring(source: str) -> str:
    """A seed script's description: its function's docstring."""
    functions = [node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)]
    if not functions:
        return ""
    return ast.get_docstring(functions[-1]) or ""
