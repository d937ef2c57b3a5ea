"""The production stack of docker-compose.yml, run on this machine with the commands compose gives each service.

Nothing here invents a command: each process's argv is read from the service's `command` in
docker-compose.yml, its environment from `.env` (made as README's "Deploy" says: a copy of .env.example filled
by deploy/init-env.py) and the service's `environment`, interpolated as compose does. What differs from the
containers is only where things are: ports on loopback instead of service names, folders under a temporary
directory instead of volumes, and this checkout's virtualenv instead of the image's. `LOCAL` lists those
differences for each service.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import requests
import yaml

from tests.stack import ROOT, free_port, stop_process_groups, wait_for

COMPOSE_FILE = ROOT / "docker-compose.yml"
BLOCKER_DIR = ROOT / "tests" / "support" / "without_science"
DASHBOARD_SERVICES = ("migrate", "web", "worker", "beat")
ENGINE_SERVICES = ("engine-init", "engine", "engine-worker")

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")
_ENV_LINE = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>[^#]*?)\s*(?:#.*)?$")


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines as compose reads an env_file: comments and blank lines ignored, values unquoted."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = _ENV_LINE.match(line.strip())
        if match:
            values[match["name"]] = match["value"].strip().strip("'\"")
    return values


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error} against the .env file's variables."""

    def replace(match: re.Match) -> str:
        current = variables.get(match["name"], "")
        if match["op"] == ":-":
            return current or match["arg"]
        if match["op"] == ":?" and not current:
            raise AssertionError(f"compose would refuse to start: {match['name']} is unset ({match['arg']})")
        return current

    return _VARIABLE.sub(replace, value)


def compose_services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


class ProductionStack:
    """Starts the services of docker-compose.yml as local processes; `start()` brings up the whole stack."""

    def __init__(self, workdir: Path, database_url: str, redis_db: tuple[int, int]):
        self.workdir = workdir
        self.services = compose_services()
        self.env_file = workdir / ".env"
        self.procs: dict[str, subprocess.Popen] = {}
        self.web_port, self.engine_port = free_port(), free_port()
        self.https_port, self.http_port = free_port(), free_port()
        self.base_url = f"https://localhost:{self.https_port}"
        self.engine_url = f"http://127.0.0.1:{self.engine_port}"
        self.gunicorn_url = f"http://127.0.0.1:{self.web_port}"
        self.caddy_data = workdir / "caddy-data"
        self.blocked_log = workdir / "blocked-imports.log"
        var, engine_var = workdir / "var", workdir / "engine-var"
        var.mkdir(exist_ok=True)
        engine_var.mkdir(exist_ok=True)
        tag = f"omlpy-smoke-{os.getpid()}"
        dashboard = {
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{redis_db[0]}",
            "REDIS_URL": f"redis://127.0.0.1:6379/{redis_db[1]}",
            "CELERY_QUEUE": tag,
            "CACHE_KEY_PREFIX": tag,
            # Caddy connects to gunicorn from 127.0.0.1: the one trusted proxy.
            "TRUSTED_PROXIES": "127.0.0.1",
            "ALLOWED_HOSTS": "localhost",
            "CSRF_TRUSTED_ORIGINS": self.base_url,
            "GUNICORN_BIND": f"127.0.0.1:{self.web_port}",
            "WEB_CONCURRENCY": "2",
            "VAR_DIR": str(var),
            "CELERY_BEAT_SCHEDULE_FILENAME": str(var / "celerybeat-schedule"),
            # The image has no pandas, numpy or matplotlib: these processes behave as if they were absent.
            "PYTHONPATH": str(BLOCKER_DIR),
            "OMLPY_BLOCKED_IMPORTS_LOG": str(self.blocked_log),
        }
        engine = {
            "DATABASE_URL": f"sqlite:///{engine_var / 'engine.sqlite3'}",
            "OMLENGINE_DATA_DB": str(engine_var / "omlengine-data.sqlite3"),
            "VAR_DIR": str(engine_var),
            "GUNICORN_BIND": f"127.0.0.1:{self.engine_port}",
            "WEB_CONCURRENCY": "1",
            "ALLOWED_HOSTS": "127.0.0.1",
        }
        self.local: dict[str, dict[str, str]] = dict.fromkeys(DASHBOARD_SERVICES, dashboard)
        self.local.update(dict.fromkeys(ENGINE_SERVICES, engine))
        self.local["proxy"] = {
            "UPSTREAM": f"127.0.0.1:{self.web_port}",
            "HTTPS_PORT": str(self.https_port),
            # Caddy's redirect listener goes to a free port: nothing binds port 80.
            "HTTP_PORT": str(self.http_port),
            "XDG_DATA_HOME": str(self.caddy_data),
            "XDG_CONFIG_HOME": str(workdir / "caddy-config"),
        }
        self.static_root = workdir / "static"

    # --- set-up, as README's "Deploy" says ---------------------------------------------------
    def init_env(self) -> None:
        self.env_file.write_text((ROOT / ".env.example").read_text())
        subprocess.run(
            [sys.executable, str(ROOT / "deploy" / "init-env.py"), "--env-file", str(self.env_file)],
            check=True,
            capture_output=True,
        )

    def build_static(self) -> None:
        """The image's build step: deploy/build.sh, with DEBUG off."""
        subprocess.run(
            ["sh", str(ROOT / "deploy" / "build.sh"), sys.executable],
            cwd=ROOT,
            env={**self._base_env(), "STATIC_ROOT": str(self.static_root)},
            check=True,
            capture_output=True,
        )

    # --- environments and commands -------------------------------------------------------------
    def _base_env(self) -> dict[str, str]:
        """What a container starts with: a PATH (this checkout's virtualenv first) and nothing of the test run's."""
        keep = ("HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
        env = {name: os.environ[name] for name in keep if name in os.environ}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def env(self, service: str) -> dict[str, str]:
        spec = self.services[service]
        variables = read_env_file(self.env_file)
        env = self._base_env()
        env_files = spec.get("env_file") or []
        if isinstance(env_files, str):
            env_files = [env_files]
        if ".env" in env_files:
            env.update(variables)
        env.update(
            {name: interpolate(str(value), variables) for name, value in (spec.get("environment") or {}).items()}
        )
        env.update(self.local.get(service, {}))
        env["STATIC_ROOT"] = str(self.static_root)
        return env

    def argv(self, service: str) -> list[str]:
        command = [str(part) for part in self.services[service]["command"]]
        program, rest = command[0], command[1:]
        if program == "python":
            return [sys.executable, *rest]
        if program in ("gunicorn", "celery"):
            return [sys.executable, "-m", program, *rest]
        if program == "caddy":
            return ["caddy", *[self._host_path(service, part) for part in rest]]
        return command

    def _host_path(self, service: str, container_path: str) -> str:
        """A path inside the container, as the file of this checkout that compose mounts there."""
        for volume in self.services[service].get("volumes", []):
            source, _, rest = str(volume).partition(":")
            target = rest.partition(":")[0]
            if target == container_path and source.startswith("./"):
                return str(ROOT / source)
        return container_path

    # --- processes -------------------------------------------------------------------------------
    def run_once(self, service: str, stdin: str | None = None, extra: list[str] | None = None) -> str:
        argv = self.argv(service) if extra is None else [sys.executable, "manage.py", *extra]
        done = subprocess.run(
            argv, cwd=ROOT, env=self.env(service), input=stdin, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{service} {argv[1:]} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def spawn(self, service: str) -> subprocess.Popen:
        log = open(self.workdir / f"{service}.log", "ab")  # noqa: SIM115 - kept open for the process's life
        proc = subprocess.Popen(
            self.argv(service),
            cwd=ROOT,
            env=self.env(service),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[service] = proc
        return proc

    def log(self, service: str) -> str:
        path = self.workdir / f"{service}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _answers(self, service: str, url: str, **kwargs) -> bool:
        if self.procs[service].poll() is not None:
            raise AssertionError(f"{service} exited:\n{self.log(service)[-3000:]}")
        try:
            return requests.get(url, timeout=3, **kwargs).status_code == 200
        except requests.RequestException:
            return False

    @property
    def caddy_root_certificate(self) -> Path:
        return self.caddy_data / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    def start(self) -> None:
        self.init_env()
        self.build_static()
        self.run_once("migrate")
        self.run_once("engine-init")
        self.spawn("engine")
        self.spawn("engine-worker")
        self.spawn("web")
        self.spawn("worker")
        self.spawn("beat")
        self.spawn("proxy")
        wait_for(lambda: self._answers("engine", f"{self.engine_url}/livez"), timeout=60, what="the engine")
        wait_for(lambda: self._answers("web", f"{self.gunicorn_url}/readyz"), timeout=60, what="gunicorn")
        wait_for(
            lambda: (
                self.caddy_root_certificate.exists()
                and self._answers("proxy", f"{self.base_url}/livez", verify=str(self.caddy_root_certificate))
            ),
            timeout=60,
            what="Caddy over https",
        )

    def stop(self) -> None:
        stop_process_groups(list(self.procs.values()))
