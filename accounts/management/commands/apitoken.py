from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.tokens import lifetime_error, token_create


class Command(BaseCommand):
    help = (
        "Create a personal API token for USERNAME and print it (it is shown only this once). It expires after "
        "--days days (API_TOKEN_DEFAULT_DAYS by default); --read-only makes it refused every write of the API."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="Command-line token", help="What the token is for.")
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help=f"How many days the token lives, 1 to API_TOKEN_MAX_DAYS (now {settings.API_TOKEN_MAX_DAYS}).",
        )
        parser.add_argument("--read-only", action="store_true", help="Refuse the token every write of the API.")

    def handle(self, *args, username, name, days, read_only, **options):
        if days is not None and (error := lifetime_error(days)):
            raise CommandError(f"--days {days}: {error}")
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"No active user named {username!r}.")
        token, secret = token_create(user=user, name=name, days=days, read_only=read_only, via="command")
        self.stdout.write(secret)
        # Standard error, so that standard output stays the token alone for scripts that capture it.
        self.stderr.write(f"{token.get_scope_display().lower()} token, expires {token.expires_at:%Y-%m-%d %H:%M} UTC")
