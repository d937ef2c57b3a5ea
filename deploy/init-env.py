#!/usr/bin/env python3
"""Fill in the generated secrets of a deployment's .env (copied from .env.example), keeping every value set.

    cp .env.example .env && python3 deploy/init-env.py [--env-file .env] [--site-address omlpy.example.com]

Writes SECRET_KEY, ENCRYPTION_KEYS, AUDIT_HMAC_KEYS, POSTGRES_PASSWORD, METRICS_TOKEN and the embedded engine's
ENGINE_SECRET_KEY, ENGINE_ENCRYPTION_KEYS and ENGINE_AUDIT_HMAC_KEYS where they are empty, and SITE_ADDRESS when
given. Needs only Python's standard library, so it runs before anything is installed. The file is left readable
by its owner only.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path


def _token() -> str:
    return secrets.token_urlsafe(50)


def _fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _password() -> str:
    return secrets.token_hex(24)


GENERATED: dict[str, Callable[[], str]] = {
    "SECRET_KEY": _token,
    "ENCRYPTION_KEYS": _fernet_key,
    "AUDIT_HMAC_KEYS": _token,
    "POSTGRES_PASSWORD": _password,
    "METRICS_TOKEN": _token,
    "ENGINE_SECRET_KEY": _token,
    "ENGINE_ENCRYPTION_KEYS": _fernet_key,
    "ENGINE_AUDIT_HMAC_KEYS": _token,
}

_ASSIGNMENT = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>[^#\s]*)(?P<rest>.*)$")


def fill(text: str, values: dict[str, str]) -> tuple[str, list[str]]:
    """`text` with each empty NAME= of `values` filled in; NAME=... lines with a value are kept as they are.
    Names missing from the file are appended. Returns the new text and the names written."""
    written: list[str] = []
    seen: set[str] = set()
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = _ASSIGNMENT.match(line)
        if not match or match["name"] not in values:
            continue
        seen.add(match["name"])
        if match["value"]:
            continue
        lines[index] = f"{match['name']}={values[match['name']]}{match['rest']}"
        written.append(match["name"])
    for name, value in values.items():
        if name not in seen:
            lines.append(f"{name}={value}")
            written.append(name)
    return "\n".join(lines) + "\n", written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", default=".env", type=Path)
    parser.add_argument("--site-address", help="the host name the site is served at (SITE_ADDRESS)")
    args = parser.parse_args(argv)
    if not args.env_file.exists():
        print(f"{args.env_file} does not exist: copy .env.example to it first", file=sys.stderr)
        return 2
    values = {name: generate() for name, generate in GENERATED.items()}
    text = args.env_file.read_text()
    text, written = fill(text, values)
    if args.site_address:
        text = re.sub(r"^SITE_ADDRESS=.*$", f"SITE_ADDRESS={args.site_address}", text, flags=re.MULTILINE)
        if f"SITE_ADDRESS={args.site_address}" not in text:
            text += f"SITE_ADDRESS={args.site_address}\n"
        written.append("SITE_ADDRESS")
    args.env_file.write_text(text)
    args.env_file.chmod(0o600)
    print(f"{args.env_file}: wrote {', '.join(written) if written else 'nothing (every value was set)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
