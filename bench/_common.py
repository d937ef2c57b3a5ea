"""Helpers shared by the benchmarks: production-like settings, a gunicorn web server, percentiles, the machine.

Each benchmark starts what it measures and stops it in a `finally`; nothing here asserts on time.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.stack import free_port, gunicorn_argv, wait_for  # noqa: E402 - the project root is on the path from here on

__all__ = ["free_port", "gunicorn_argv", "wait_for"]

PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_BASE_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")

# DEBUG off, as in production, with secrets that exist only for benchmark runs and plain http on loopback.
PRODUCTION_LIKE_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "bench-only-secret-key-not-used-anywhere-else-0123456789",
    "ENCRYPTION_KEYS": "9SZTblygt3xArpISV3_IM3qAVszu5ZAdbgCv08a3tEw=",
    "AUDIT_HMAC_KEYS": "bench-only-audit-chain-key-not-used-anywhere-else-0123456789",
    "SECURE_COOKIES": "false",
    "SECURE_SSL_REDIRECT": "false",
    "SECURE_HSTS_SECONDS": "0",
    "OMLENGINE_ENABLED": "false",
    "LOG_LEVEL": "WARNING",
    "PYTHONUNBUFFERED": "1",
}


def percentile(values: list[float], pct: float) -> float:
    """The pct-th percentile by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "max_ms": round(max(ms), 1),
    }


def machine() -> dict[str, object]:
    """What the figures ran on."""
    info: dict[str, object] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return info


def postgres_version() -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


def redis_version() -> str:
    import redis

    return redis.Redis.from_url(REDIS_BASE_URL).info("server")["redis_version"]


def database_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def recreate_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_exists(name: str) -> bool:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def setup_django(env: dict[str, str]) -> None:
    """Configure this process's settings from `env` (as the servers get them) and start Django."""
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omlpy_dashboard.settings")
    import django

    django.setup()


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class WebServer:
    """gunicorn serving the project with `env`, static files collected into the run's own STATIC_ROOT."""

    def __init__(self, env: dict[str, str], log_dir: Path, *, workers: int = 2, threads: int = 8):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / "web.log"
        self.env = {**os.environ, **env, "STATIC_ROOT": str(log_dir / "static"), "PORT": str(self.port)}
        self.workers = workers
        self.threads = threads
        self.proc: subprocess.Popen | None = None

    def collectstatic(self) -> None:
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=self.env, check=True
        )

    def start(self) -> WebServer:
        import requests

        self.collectstatic()
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process's life
        self.proc = subprocess.Popen(
            gunicorn_argv(self.port, workers=self.workers, threads=self.threads),
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise SystemExit(f"web server exited:\n{self.log_path.read_text(errors='replace')[-3000:]}")
            return requests.get(f"{self.base_url}/healthz", timeout=2).status_code in (200, 503)

        wait_for(answers, timeout=90, what="the web server")
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None


def stop_process(proc: subprocess.Popen | None) -> None:
    """SIGTERM the process group started for `proc`, SIGKILL after a grace period."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def login(session, base_url: str, username: str, password: str) -> None:
    """Sign `session` (requests.Session) in through the real login form."""
    url = f"{base_url}/accounts/login/"
    session.get(url, timeout=30).raise_for_status()
    answer = session.post(
        url,
        data={"username": username, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": url},
        timeout=30,
        allow_redirects=False,
    )
    if answer.status_code != 302 or "sessionid" not in session.cookies:
        raise SystemExit(f"login as {username} failed: {answer.status_code}")


def print_figures(figures: dict) -> None:
    """The last line of every benchmark: one JSON object with all its figures."""
    print(json.dumps(figures, sort_keys=True, default=str))
