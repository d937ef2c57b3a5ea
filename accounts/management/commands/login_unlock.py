from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import throttling
from accounts.models import LoginLock
from omlpy_dashboard.client_address import parse_address


def _describe(lock: LoginLock) -> str:
    return f"{lock}, {lock.get_scope_display().lower()}, {throttling.remaining_seconds(lock)} s left"


class Command(BaseCommand):
    help = (
        "Lift sign-in locks: every lock of USERNAME (account-wide and from each address); with --address, only "
        "its lock at that address; --address alone, the locks of that address. Each lift is audited."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", nargs="?", default="", help="The user name the locks are for.")
        parser.add_argument("--address", default="", help="The client address the locks are for.")
        parser.add_argument("--list", action="store_true", dest="list_only", help="Only list the locks in force.")

    def handle(self, *args, username: str, address: str, list_only: bool, **options) -> None:
        if list_only:
            for lock in throttling.current_locks(username=username, address=self._address(address)):
                self.stdout.write(_describe(lock))
            return
        if not username.strip() and not address:
            raise CommandError("Name a USERNAME, an --address, or both (or --list the locks in force).")
        locks = throttling.current_locks(username=username, address=self._address(address))
        if username.strip() and address:
            locks = locks.filter(scope=LoginLock.Scope.USER_IP)
        lifted = throttling.login_unlock(locks=locks, via="manage.py login_unlock")
        if not lifted:
            self.stdout.write("No sign-in lock in force matched.")
        for lock in lifted:
            self.stdout.write(f"Lifted: {lock}, {lock.get_scope_display().lower()}")

    @staticmethod
    def _address(text: str) -> str | None:
        if not text:
            return None
        address = parse_address(text)
        if address is None:
            raise CommandError(f"--address: {text!r} is not an IP address.")
        return str(address)
