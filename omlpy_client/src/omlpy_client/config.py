"""The stored sign-in (server URL and API token) and the environment that overrides it.

`omlpy login` keeps them in `config.json` in the user's configuration folder (`$XDG_CONFIG_HOME/omlpy`, by
default `~/.config/omlpy`; `~/Library/Application Support/omlpy` on macOS; `%APPDATA%\\omlpy` on Windows),
readable by the user only. OMLPY_URL and OMLPY_TOKEN override each stored value.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigurationError, NotSignedInError

CONFIG_FILE = "config.json"


def config_dir() -> Path:
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Application Support")
    else:
        base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "omlpy"


def config_path() -> Path:
    return config_dir() / CONFIG_FILE


@dataclass(frozen=True)
class Settings:
    """Where to connect and how patiently; from the stored sign-in and the environment."""

    url: str
    token: str
    timeout: float = 60.0
    retries: int = 3
    retry_backoff: float = 0.5
    poll_interval: float = 5.0


def _stored() -> dict[str, str]:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}; sign in again with `omlpy login URL`") from None
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def _number(name: str, default: float, kind: type[float] | type[int]) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a {'whole ' if kind is int else ''}number, not {raw!r}") from None
    if value < 0:
        raise ConfigurationError(f"{name} must not be negative")
    return value


def load_settings() -> Settings:
    """The stored sign-in with the environment's overrides; ConfigurationError when either part is missing."""
    stored = _stored()
    url = os.environ.get("OMLPY_URL") or stored.get("url", "")
    token = os.environ.get("OMLPY_TOKEN") or stored.get("token", "")
    if not url or not token:
        missing = "server URL" if not url else "API token"
        raise NotSignedInError(f"not signed in (no {missing}): run `omlpy login URL`, or set OMLPY_URL and OMLPY_TOKEN")
    return Settings(
        url=url,
        token=token,
        timeout=_number("OMLPY_TIMEOUT", 60.0, float) or 60.0,
        retries=int(_number("OMLPY_RETRIES", 3, int)),
        retry_backoff=_number("OMLPY_RETRY_BACKOFF", 0.5, float),
        poll_interval=_number("OMLPY_POLL_INTERVAL", 5.0, float) or 5.0,
    )


def stored_url() -> str:
    return _stored().get("url", "")


def save_login(url: str, token: str) -> Path:
    """Keep `url` and `token`, in a file only its owner may read or write (written whole, then renamed)."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{CONFIG_FILE}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"url": url, "token": token}, handle)
    os.chmod(temporary, 0o600)  # whatever the umask
    os.replace(temporary, path)
    return path


def forget_login() -> bool:
    """Remove the stored sign-in; False when there was none."""
    try:
        config_path().unlink()
    except FileNotFoundError:
        return False
    return True
