"""Fault drills: the real processes under the faults the design promises to survive, with figures.

    python bench/drills.py [--only a,b] [--jobs 500] [--log-dir DIR]

Every drill runs against a private PostgreSQL cluster and a private Redis (broker and cache), started here and
removed at the end, with the real processes: gunicorn serving the dashboard and the embedded engine, a Celery
worker with beat, and the engine worker. Jobs are timer scripts submitted through the JSON API, each with a
unique `tag` parameter so that every POST the engine accepted can be matched to its dashboard job.

    a  SIGKILL the Celery worker 10 times during the run, restarting it after a short pause each time.
    b  Restart Redis (broker and cache; it keeps nothing across the restart) while jobs are submitted.
    c  Restart PostgreSQL (every session ended) while jobs are submitted.
    d  The engine injects 20 % faults: 500, 503, slow answers, malformed JSON, 201 without Location.
    e  OML tokens expire every 3 seconds (refreshed 1 second before expiry).

After the disruption each drill waits for every job to end, up to a settle period that covers the janitor's
deadlines, then counts:

    lost             a job the API accepted with no row, or a row left non-terminal with neither a next poll
                     time nor a janitor path (a deadline the janitor acts on)
    stuck            a job not terminal at the end of the settle period
    double-submitted a dashboard job for which the engine accepted more than one POST
    failed           failed or timed-out jobs, grouped by reason (a 500 on the status or result URL and a 201
                     without Location are failures by protocol, with their reason, not losses)

The last line printed is one JSON object with every drill's figures. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import os
import random
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._drills_servers import PrivatePostgres, PrivateRedis  # noqa: E402

BASE_DB = "drills_base"
USERNAME = "drills"
# Janitor deadlines shortened so that whatever a drill leaves behind is resolved within its settle period.
LIFECYCLE_ENV = {
    "JOBS_SWEEP_INTERVAL": "1",
    "JOBS_JANITOR_INTERVAL": "3",
    "JOBS_SUBMIT_DEADLINE": "30",
    "JOBS_QUEUED_RESEND_AFTER": "8",
    "JOBS_FETCH_RETRY_AFTER": "5",
    "JOBS_FETCH_DEADLINE": "90",
    "JOBS_POLL_LEASE": "10",
    "JOBS_POLL_STRATEGY": "backoff",
    "JOBS_POLL_CAP": "6",
    "OML_READ_TIMEOUT": "20",
    "CELERY_TASK_SOFT_TIME_LIMIT": "60",
    "CELERY_TASK_TIME_LIMIT": "90",
    "CELERY_VISIBILITY_TIMEOUT": "120",
}
# After the last submission and the end of the disruption: the longest job, then the janitor's deadlines.
SETTLE_AFTER_LONGEST_JOB = 30 + 90 + 30
SUBMIT_WINDOW = 20.0
MIXED_FAULTS = "500=0.04,503=0.04,delay=0.04,malformed=0.04,nolocation=0.04,delay_seconds=2"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- Setup -----------------------------------------------------------------------------------------


def configure_environment(pg: PrivatePostgres, redis: PrivateRedis, var_dir: Path) -> None:
    """Settings for this process and every process it starts (the Stack copies the environment)."""
    from cryptography.fernet import Fernet

    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "omlpy_dashboard.settings",
            "DATABASE_URL": pg.url(BASE_DB),
            "CELERY_BROKER_URL": redis.url(0),
            "REDIS_URL": redis.url(1),
            "CELERY_QUEUE": "drills",
            "VAR_DIR": str(var_dir),
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "AUDIT_HMAC_KEYS": secrets.token_urlsafe(50),
            "SECURE_COOKIES": "false",
            "SECURE_HSTS_SECONDS": "0",
            "OMLENGINE_ENABLED": "true",
            "OMLENGINE_TIMER_SCRIPTS": "true",
            "LOG_LEVEL": "INFO",
            **LIFECYCLE_ENV,
        }
    )


def admin_sql(pg: PrivatePostgres, statement: str) -> None:
    import psycopg

    with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
        conn.execute(statement)


def prepare_base(pg: PrivatePostgres) -> str:
    """Migrate and seed the template every drill's database is copied from; returns an API token."""
    import django
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections

    admin_sql(pg, f"CREATE DATABASE {BASE_DB}")
    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    call_command("omlengine_seed", verbosity=0, stdout=io.StringIO())
    # The web process runs with DEBUG off: its pages (error pages included) need the collected static files.
    call_command("collectstatic", verbosity=0, interactive=False)
    from accounts.models import Membership, Team
    from accounts.tokens import token_create

    user = get_user_model().objects.create_user(username=USERNAME, password=secrets.token_urlsafe(16))
    # Connections are granted to teams: each drill's connection is granted to this one.
    Membership.objects.create(user=user, team=Team.objects.create(name="Drills"), role=Membership.Role.ANALYST)
    _, raw = token_create(user=user, name="drills", via="bench")
    connections.close_all()
    return raw


def use_database(pg: PrivatePostgres, name: str) -> None:
    """A fresh copy of the template, and this process's ORM pointed at it."""
    from django.conf import settings
    from django.db import connections

    connections.close_all()
    admin_sql(pg, f"CREATE DATABASE {name} TEMPLATE {BASE_DB}")
    settings.DATABASES["default"]["NAME"] = name
    connections["default"].settings_dict["NAME"] = name


# --- Submitting ------------------------------------------------------------------------------------


@dataclass
class Submissions:
    """What the API answered: tags it accepted (201) and the other answers it gave."""

    accepted: dict[str, str] = field(default_factory=dict)
    errors: Counter = field(default_factory=Counter)
    given_up: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)


def submit_all(base_url: str, token: str, drill: str, durations: list[float], window: float) -> Submissions:
    """Submit one job per duration, spread evenly over `window` seconds, in a background thread.

    A submission the API refuses or does not answer is sent again with a new tag (an unanswered one may have
    created its job all the same: it is tracked by its own tag)."""
    import requests

    out = Submissions()
    headers = {"Authorization": f"Bearer {token}"}
    started = time.monotonic()

    def one(index: int, seconds: float) -> None:
        session = requests.Session()
        time.sleep(max(0.0, started + index * window / max(len(durations), 1) - time.monotonic()))
        for attempt in range(200):
            tag = f"{drill}-{index}-{attempt}"
            body = {
                "kind": "do_eval",
                "script": "timer",
                "asyncFlag": True,
                "parameters": {"seconds": seconds, "tag": tag},
            }
            try:
                answer = session.post(f"{base_url}/api/v1/jobs", json=body, headers=headers, timeout=15)
                status = str(answer.status_code)
            except requests.RequestException as exc:
                answer, status = None, exc.__class__.__name__
            with out.lock:
                if answer is not None and answer.status_code == 201:
                    out.accepted[tag] = answer.json()["id"]
                    return
                out.errors[status] += 1
            time.sleep(0.5)
        with out.lock:
            out.given_up += 1

    def run() -> None:
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(one, range(len(durations)), durations))
        out.done.set()

    threading.Thread(target=run, name="submitter", daemon=True).start()
    return out


# --- Disruptions -----------------------------------------------------------------------------------


def _log_size(stack, name: str) -> int:
    path = stack.log_dir / f"{name}.log"
    return path.stat().st_size if path.exists() else 0


def _wait_ready(stack, name: str, offset: int, timeout: float = 60) -> bool:
    path = stack.log_dir / f"{name}.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), open(path, "rb") as handle:
            handle.seek(offset)
            if b" ready." in handle.read():
                return True
        time.sleep(0.2)
    return False


def kill_worker_repeatedly(stack, times: int, rng: random.Random) -> dict:
    """SIGKILL the whole worker (main process, pool and beat) once it is up, then start it after a pause."""
    kills = 0
    for _ in range(times):
        _wait_ready(stack, "worker", stack.worker_log_offset)
        time.sleep(rng.uniform(2, 6))
        stack.kill("worker", signal.SIGKILL)
        kills += 1
        time.sleep(rng.uniform(1, 3))
        stack.worker_log_offset = _log_size(stack, "worker")
        stack.start_worker()
    return {"worker_kills": kills}


def restart_redis(redis: PrivateRedis, delay: float, down: float) -> dict:
    time.sleep(delay)
    redis.stop()
    time.sleep(down)
    redis.start()
    return {"redis_down_seconds": down}


def restart_postgres(pg: PrivatePostgres, delay: float, down: float) -> dict:
    time.sleep(delay)
    pg.stop("fast")
    time.sleep(down)
    pg.start()
    return {"postgres_down_seconds": down}


# --- Counting --------------------------------------------------------------------------------------


def _has_janitor_path(job) -> bool:
    """Whether something will still act on a non-terminal job: a poll, or one of the janitor's rules."""
    from jobs.states import JobState as S

    if job.deadline_at is not None:
        return True
    if job.state == S.QUEUED:
        return True  # re-sent once older than JOBS_QUEUED_RESEND_AFTER
    if job.state in (S.SUBMITTING, S.RUNNING):
        return job.submitted_at is not None
    if job.state == S.PENDING:
        return job.next_poll_at is not None
    if job.state == S.FETCHING:
        return job.oml_finished_at is not None
    return False


def _reason_key(reason: str) -> str:
    text = " ".join(UUID_RE.sub("<id>", reason).split())
    return text[:120]


def count(submissions: Submissions) -> dict:
    """The drill's figures, read from the dashboard's and the engine's tables."""
    from jobs.models import Job, JobTransition
    from jobs.states import TERMINAL_STATES
    from jobs.states import JobState as S
    from omlengine.models import EngineCall

    jobs = {job.parameters.get("tag"): job for job in Job.objects.filter(owner__username=USERNAME)}
    missing = [tag for tag in submissions.accepted if tag not in jobs]
    active = [job for job in jobs.values() if job.state not in TERMINAL_STATES]
    pathless = [job for job in active if not _has_janitor_path(job)]
    calls = Counter(
        (request or {}).get("kwargs", {}).get("tag")
        for request in EngineCall.objects.filter(job__isnull=False).values_list("job__request", flat=True)
    )
    double = sorted(tag for tag, n in calls.items() if tag in jobs and n > 1)
    unknown_to_dashboard = sum(
        1
        for tag, job in jobs.items()
        if calls.get(tag) and not job.oml_job_id  # OML accepted it, the dashboard never learnt its id
    )
    reasons = Counter(
        f"{to_state}: {_reason_key(reason)}"
        for to_state, reason in JobTransition.objects.filter(
            job__owner__username=USERNAME, to_state__in=[S.FAILED, S.TIMED_OUT]
        ).values_list("to_state", "reason")
    )
    states = Counter(job.state for job in jobs.values())
    return {
        "jobs": len(jobs),
        "accepted_by_api": len(submissions.accepted),
        "created_despite_error_answer": sum(1 for tag in jobs if tag not in submissions.accepted),
        "api_error_answers": dict(submissions.errors),
        "given_up_submissions": submissions.given_up,
        "lost": len(missing) + len(pathless),
        "stuck": len(active),
        "double_submitted": len(double),
        "succeeded": states.get(S.SUCCEEDED, 0),
        "failed": states.get(S.FAILED, 0),
        "timed_out": states.get(S.TIMED_OUT, 0),
        "failed_with_reason": dict(reasons.most_common()),
        "engine_jobs_unknown_to_dashboard": unknown_to_dashboard,
        "states": dict(states),
        "examples": {
            "missing": missing[:5],
            "stuck": [f"{job.uuid} {job.state}" for job in active[:5]],
            "double_submitted": double[:5],
        },
    }


def _active_count() -> int | None:
    from django.db import connections
    from django.db.utils import DatabaseError

    from jobs.models import Job
    from jobs.states import ACTIVE_STATES

    try:
        return Job.objects.filter(owner__username=USERNAME, state__in=ACTIVE_STATES).count()
    except DatabaseError:
        connections.close_all()
        return None


def log_summary(stack) -> dict:
    """What the logs say: the janitor's actions summed, errors and tracebacks per process."""
    janitor = Counter()
    errors = {}
    for path in sorted(stack.log_dir.glob("*.log")):
        text = path.read_text(errors="replace")
        for match in re.finditer(r"janitor: (\{[^}]*\})", text):
            with contextlib.suppress(ValueError, SyntaxError):
                janitor.update(ast.literal_eval(match.group(1)))
        errors[path.stem] = {
            "error_lines": len(re.findall(r"\b(?:ERROR|CRITICAL)\b", text)),
            "tracebacks": text.count("Traceback (most recent call last)"),
        }
    return {"janitor": {key: value for key, value in janitor.items() if value}, "log_errors": errors}


# --- Drills ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drill:
    key: str
    title: str
    shortest: float
    longest: float
    env: dict[str, str] = field(default_factory=dict)


DRILLS = {
    "a": Drill("a", "SIGKILL the Celery worker 10 times", 3, 60),
    "b": Drill("b", "restart Redis (broker and cache) mid-run", 2, 30),
    "c": Drill("c", "restart PostgreSQL mid-run", 2, 30),
    "d": Drill("d", "the engine injects 20 % mixed faults", 2, 30, {"OMLENGINE_FAULTS": MIXED_FAULTS}),
    "e": Drill(
        "e", "tokens expire every 3 seconds", 2, 30, {"OMLENGINE_TOKEN_LIFETIME": "3", "OML_TOKEN_REFRESH_MARGIN": "1"}
    ),
}


def run_drill(drill: Drill, *, jobs: int, pg: PrivatePostgres, redis: PrivateRedis, token: str, log_dir: Path) -> dict:
    from tests.stack import Stack

    rng = random.Random(f"drill-{drill.key}")
    use_database(pg, f"drill_{drill.key}")
    import redis as redis_client

    redis_client.Redis(port=redis.port).flushall()

    from accounts.models import Team
    from jobs.services.jobs import connection_save

    stack = Stack(log_dir=log_dir / drill.key, env={"DATABASE_URL": pg.url(f"drill_{drill.key}"), **drill.env})
    connection_save(
        name="Engine",
        base_url=stack.base_url,
        username="OMLUSER",
        password="omluser",  # noqa: S106 - the embedded engine's documented demo user
        is_default=True,
        poll_budget=300,
        teams=Team.objects.all(),
    )
    started = time.monotonic()
    disruption: dict = {}
    try:
        stack.start_web()
        stack.start_engine_worker()
        stack.worker_log_offset = _log_size(stack, "worker")
        stack.start_worker()
        durations = [round(rng.uniform(drill.shortest, drill.longest), 1) for _ in range(jobs)]
        log(f"drill {drill.key}: {drill.title}; {jobs} timer jobs of {drill.shortest:g}-{drill.longest:g} s")
        submissions = submit_all(stack.base_url, token, drill.key, durations, SUBMIT_WINDOW)
        if drill.key == "a":
            disruption = kill_worker_repeatedly(stack, 10, rng)
        elif drill.key == "b":
            disruption = restart_redis(redis, delay=SUBMIT_WINDOW / 2, down=5)
        elif drill.key == "c":
            disruption = restart_postgres(pg, delay=SUBMIT_WINDOW / 2, down=5)
        submissions.done.wait()
        settle_until = time.monotonic() + drill.longest + SETTLE_AFTER_LONGEST_JOB
        last_report = 0.0
        while time.monotonic() < settle_until:
            active = _active_count()
            if active == 0:
                break
            if time.monotonic() - last_report > 10:
                log(f"drill {drill.key}: {active} jobs still active at {time.monotonic() - started:.0f} s")
                last_report = time.monotonic()
            time.sleep(2)
        settled_after = time.monotonic() - started
        exited = sorted(name for name, proc in stack.procs.items() if proc.poll() is not None)
        figures = count(submissions)
    finally:
        stack.stop()
    figures.update(
        {
            "drill": drill.title,
            "seconds": round(settled_after, 1),
            "processes_exited": exited,
            **disruption,
            **log_summary(stack),
        }
    )
    return figures


def report(key: str, figures: dict) -> None:
    print(
        f"drill {key} ({figures['drill']}): {figures['jobs']} jobs, {figures['succeeded']} succeeded, "
        f"{figures['failed']} failed, {figures['timed_out']} timed out; lost {figures['lost']}, "
        f"stuck {figures['stuck']}, double-submitted {figures['double_submitted']}; settled in {figures['seconds']} s"
    )
    for reason, n in figures["failed_with_reason"].items():
        print(f"    {n:4d} x {reason}")
    print(
        f"    API: {figures['accepted_by_api']} accepted, error answers {figures['api_error_answers'] or 0}, "
        f"{figures['created_despite_error_answer']} created despite an error answer; "
        f"engine jobs the dashboard never learnt the id of: {figures['engine_jobs_unknown_to_dashboard']}"
    )
    # A janitor run killed before its summary line is not counted here: these are lower bounds.
    print(
        f"    janitor (logged runs): {figures['janitor'] or 'nothing done'}; "
        f"exited processes: {figures['processes_exited'] or 0}"
    )
    if figures["stuck"] or figures["lost"] or figures["double_submitted"]:
        print(f"    examples: {figures['examples']}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="a,b,c,d,e", help="comma-separated drills to run (default all: a,b,c,d,e)")
    parser.add_argument("--jobs", type=int, default=500, help="jobs per drill (default 500)")
    parser.add_argument("--log-dir", default="", help="keep the processes' logs here (default: removed at the end)")
    args = parser.parse_args()
    keys = [key.strip() for key in args.only.split(",") if key.strip()]
    unknown = [key for key in keys if key not in DRILLS]
    if unknown:
        parser.error(f"unknown drills {unknown}; choose from {sorted(DRILLS)}")

    # A terminated run still stops every process and server it started (the finally clauses below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    scratch = Path(tempfile.mkdtemp(prefix="drills-"))
    log_dir = Path(args.log_dir).resolve() if args.log_dir else scratch / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    pg = PrivatePostgres()
    redis = PrivateRedis(log_dir)
    results: dict[str, dict] = {}
    try:
        pg.init()
        pg.start()
        redis.start()
        configure_environment(pg, redis, scratch / "var")
        token = prepare_base(pg)
        for key in keys:
            results[key] = run_drill(DRILLS[key], jobs=args.jobs, pg=pg, redis=redis, token=token, log_dir=log_dir)
            report(key, results[key])
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        redis.cleanup()
        if args.log_dir:
            with contextlib.suppress(OSError):
                shutil.copy(pg.log_path, log_dir / "postgres.log")
        pg.cleanup()
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps({"jobs_per_drill": args.jobs, "drills": results}, sort_keys=True))


if __name__ == "__main__":
    main()
