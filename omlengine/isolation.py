"""What an execution's sandbox is made of: the bubblewrap command line, the user scripts run as, and the probe
that says at start whether isolation can be set up here.

With OMLENGINE_SANDBOX on (the default) the fork server, and so every execution, runs under bubblewrap:

- new PID, network, IPC, UTS and cgroup namespaces: no network at all (a loopback of its own with nothing on it),
  no view of the host's processes;
- a root filesystem of its own that holds, read-only, only /usr (and the /bin, /lib links), the Python
  installation, the virtualenv, the `omlengine` package and the data database file; a private /tmp; no /etc
  beyond the dynamic linker's cache, the time zone and fonts, no home, no VAR_DIR (an empty tmpfs covers it
  wherever it lies), none of the project's other files (.env included);
- an empty environment;
- as OMLENGINE_SANDBOX_USER when the engine runs as root (bubblewrap keeps only the capabilities needed to
  switch to it, and the fork server switches before it imports anything); as the engine's own user, inside a
  user namespace, otherwise.
"""

from __future__ import annotations

import functools
import logging
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
_SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/fonts")
_PROBE_TIMEOUT = 30


class Unavailable(Exception):
    """Isolation cannot be set up here; the message says why."""


@dataclass(frozen=True)
class Config:
    """Everything that decides how the fork server starts; a change of any of it starts a new one."""

    enabled: bool
    bwrap: str
    user: str
    data_db: str
    var_dir: str

    @classmethod
    def current(cls) -> Config:
        return cls(
            enabled=settings.OMLENGINE_SANDBOX == "on",
            bwrap=settings.OMLENGINE_BWRAP,
            user=settings.OMLENGINE_SANDBOX_USER,
            data_db=str(Path(settings.OMLENGINE_DATA_DB).resolve()),
            var_dir=str(Path(settings.VAR_DIR).resolve()),
        )


def python() -> str:
    """The virtualenv's interpreter by a path that exists inside the sandbox (the real path of sys.prefix)."""
    candidate = Path(sys.prefix).resolve() / "bin" / Path(sys.executable).name
    return str(candidate if candidate.exists() else Path(sys.executable).resolve())


def identity(config: Config) -> tuple[int, int] | None:
    """The (uid, gid) the fork server switches to, or None when it keeps the engine's own (not root, or off)."""
    if not config.enabled or os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwuid(int(config.user)) if config.user.isdigit() else pwd.getpwnam(config.user)
    except KeyError:
        if config.user.isdigit():
            return int(config.user), int(config.user)
        raise Unavailable(f"OMLENGINE_SANDBOX_USER {config.user!r} is not a user of this system.") from None
    if entry.pw_uid == 0:
        raise Unavailable("OMLENGINE_SANDBOX_USER must not be root.")
    return entry.pw_uid, entry.pw_gid


def wrapper(config: Config) -> list[str]:
    """The bubblewrap command line that goes before the fork server's own (empty when the sandbox is off)."""
    if not config.enabled:
        return []
    binary = shutil.which(config.bwrap)
    if binary is None:
        raise Unavailable(f"bubblewrap ({config.bwrap}) is not installed; apt-get install bubblewrap")
    argv = [binary, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    # No --new-session: the sandbox has no terminal (the engine starts it in a session of its own), and staying
    # in bubblewrap's process group lets the engine kill the whole sandbox with one signal.
    argv += ["--hostname", "omlengine", "--clearenv"]
    if os.geteuid() == 0:
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]  # noqa: S108 - its own tmpfs
    return argv + _Filesystem(config).arguments() + ["--chdir", str(PROJECT_DIR), "--"]


class _Filesystem:
    """Read-only binds at the same paths as outside, the directories above them made traversable, and VAR_DIR an
    empty tmpfs wherever it lies (inside the project, the virtualenv, /usr...): mounted first, and again after
    any bind that contains it."""

    def __init__(self, config: Config):
        self.var_dir = Path(config.var_dir)
        self.data_db = Path(config.data_db)
        self.argv: list[str] = []
        self.bound: list[Path] = []
        self.made: set[Path] = {Path("/")}

    def arguments(self) -> list[str]:
        self._hide_var_dir()
        self._bind(Path("/usr"))
        for link in _SYSTEM_LINKS:
            if os.path.islink(link):
                self.argv += ["--symlink", os.readlink(link), link]
            elif os.path.isdir(link):
                self._bind(Path(link))
        for name in _ETC_FILES:
            if os.path.exists(name):
                self._bind(Path(name).resolve(), at=Path(name))
        for prefix in sorted({Path(p).resolve() for p in (sys.base_prefix, sys.base_exec_prefix, sys.prefix)}):
            self._bind(prefix)
        self._bind(PACKAGE_DIR)
        self._directory(PROJECT_DIR)
        self._parents(self.data_db)
        self.argv += ["--ro-bind", str(self.data_db), str(self.data_db)]
        return self.argv

    def _hide_var_dir(self) -> None:
        self._parents(self.var_dir)
        self.argv += ["--perms", "0755", "--tmpfs", str(self.var_dir)]
        self.made.add(self.var_dir)

    def _bind(self, source: Path, at: Path | None = None) -> None:
        target = at or source
        if any(target.is_relative_to(root) for root in self.bound):
            return
        self._parents(target)
        self.argv += ["--ro-bind", str(source), str(target)]
        self.bound.append(target)
        if self.var_dir.is_relative_to(target):
            self.argv += ["--perms", "0755", "--tmpfs", str(self.var_dir)]

    def _parents(self, path: Path) -> None:
        for parent in reversed(path.parents):
            self._directory(parent)

    def _directory(self, path: Path) -> None:
        if path in self.made or any(path.is_relative_to(root) for root in self.bound):
            return
        self._parents(path)
        self.argv += ["--perms", "0755", "--dir", str(path)]
        self.made.add(path)


@functools.lru_cache(maxsize=4)
def probe(config: Config) -> str | None:
    """None when the sandbox can be set up here, else why not (cached per configuration: one probe a process)."""
    if not config.enabled:
        return None
    try:
        identity(config)
        ensure_data_db(config)
        argv = [*wrapper(config), "true"]
    except Unavailable as exc:
        return str(exc)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_PROBE_TIMEOUT, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not start: {exc}"
    if done.returncode != 0:
        return f"bubblewrap failed: {done.stderr.strip()[-300:] or f'exit code {done.returncode}'}"
    return None


def ensure_data_db(config: Config) -> None:
    """The data database must exist to be bound: an empty one is created (`omlengine_seed` fills it in place)."""
    path = Path(config.data_db)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o644)


def announce() -> None:
    """Say at start how scripts will run: isolated, refused (and why), or unisolated because the setting says so."""
    config = Config.current()
    if not config.enabled:
        logger.warning(
            "embedded engine: OMLENGINE_SANDBOX=off: scripts run without isolation, with this process's user, "
            "files and network"
        )
        return
    reason = probe(config)
    if reason is None:
        who = identity(config)
        user = f"uid {who[0]}" if who else f"this process's uid {os.geteuid()} in a user namespace"
        logger.info("embedded engine: scripts run isolated by bubblewrap as %s, without network", user)
    else:
        logger.error(
            "embedded engine: scripts cannot be isolated (%s); every execution is refused until this is fixed, "
            "or set OMLENGINE_SANDBOX=off to run scripts without isolation",
            reason,
        )
