"""Submissions per second through POST /api/v1/jobs, with N concurrent API clients.

1. Starts its own web server (gunicorn, DEBUG off) on a fresh database: SQLite with the filesystem broker by
   default, or PostgreSQL with Redis as broker and cache with `--postgres`. No Celery worker runs: every
   accepted job is a `queued` row whose submit message waits in the broker, so what is measured is the API's
   own path (authenticate, validate, insert the job and its audit entry, publish the message, answer).
2. Creates an analyst in a team, the default connection and a personal API token.
3. N client threads (one keep-alive http.client connection each) post do-eval jobs as fast as the server answers for a
   warm-up, then for the measured period; counts every answer by status, and the latency of each.
4. Checks afterwards that the database holds exactly one job per 201 answer.

The last line printed is one JSON object with every figure.

    .venv/bin/python bench/submit.py [--postgres] [--clients 16] [--seconds 20] [--workers 3] [--threads 4]
        [--rules 3]

`--rules N` gives the analyst N notification rules first (in-app, email and webhook, about failures, successes,
slow and stuck jobs), so that `cpu_ms_per_submission` with and without them shows what rules cost a submission.

`--statements` starts no server: in this process, on a fresh database (SQLite, or with `--postgres` the
PostgreSQL database `--database`), it measures the CPU time per call of each read and write a submission, a
request's metrics flush or a job's last transition makes through the code that may use plain SQL (the token,
the default connection, the memberships, the audit append, the metrics flush, the tally), and of the operations
they are part of: a whole submission through the API (Django's test client, no HTTP server) and a job's last
transition. Run it on two versions of the code, alternated, to see what a change of one of them costs:

    .venv/bin/python bench/submit.py --statements [--postgres --database NAME] [--calls 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import threading
import time
import urllib.parse
from collections import Counter

from _common import (
    PRODUCTION_LIKE_ENV,
    REDIS_BASE_URL,
    WebServer,
    database_url,
    drop_database,
    machine,
    postgres_version,
    print_figures,
    recreate_database,
    redis_version,
    scratch_dir,
    setup_django,
    summary_ms,
)

TARGET_PER_SECOND = 200
REDIS_DB = 7


def prepare(rules: int = 0) -> str:
    """Schema, an analyst in a team with `rules` notification rules, the default connection; returns the
    analyst's API token."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from accounts.models import Membership, Team
    from accounts.tokens import token_create
    from jobs.services.jobs import connection_save

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user(username="bench-analyst")
    Membership.objects.create(user=user, team=Team.objects.create(name="Risk"), role=Membership.Role.ANALYST)
    connection_save(
        name="OML production",
        base_url="https://oml.example.com",
        username="OMLUSER",
        password=PRODUCTION_LIKE_ENV["SECRET_KEY"],
        is_default=True,
        teams=Team.objects.all(),
    )
    from notifications.services import RuleInput, rule_create

    kinds = [
        {"channel": "inapp", "events": ["succeeded", "failed"]},
        {"channel": "email", "target": "ops@example.com", "events": ["failed", "timed_out"]},
        {"channel": "inapp", "events": ["slow", "stuck"]},
    ]
    for index in range(rules):
        rule_create(user=user, data=RuleInput(**kinds[index % len(kinds)]))
    _, raw = token_create(user=user, name="bench")
    return raw


class Clients:
    """`count` threads posting jobs until told to stop; answers counted only while `measuring` is set."""

    BODY = {"kind": "do_eval", "script": "group_count", "parameters": {"n": 3}}

    def __init__(self, url: str, token: str, count: int):
        self.url = url
        self.token = token
        self.count = count
        self.stop = threading.Event()
        self.measuring = threading.Event()
        self.lock = threading.Lock()
        self.statuses: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.created_total = 0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def _run(self) -> None:
        # http.client rather than requests: the clients share the machine's two cores with the server, and
        # requests spends about four times the CPU per call. Keep-alive, one connection per thread.
        parts = urllib.parse.urlsplit(self.url)
        body = json.dumps(self.BODY).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                conn.request("POST", parts.path, body=body, headers=headers)
                answer = conn.getresponse()
                answer.read()
                status = str(answer.status)
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
            elapsed = time.perf_counter() - started
            with self.lock:
                if status == "201":
                    self.created_total += 1
                if self.measuring.is_set():
                    self.statuses[status] += 1
                    self.latencies.append(elapsed)
        conn.close()

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=90)


class CpuShares:
    """CPU seconds used from now on by the clients (this process), the web workers and the database."""

    def __init__(self, web_pid: int, database: str | None):
        import psutil

        self.parts: dict[str, list] = {
            "clients": [psutil.Process()],
            "web": psutil.Process(web_pid).children(),
            "database": [],
        }
        if database:
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [database]
                )
                self.parts["database"] = [psutil.Process(row[0]) for row in cursor.fetchall()]
        self.start = self._now()

    def _now(self) -> dict[str, float]:
        import psutil

        totals = {}
        for part, processes in self.parts.items():
            total = 0.0
            for process in processes:
                try:
                    times = process.cpu_times()
                except psutil.Error:
                    continue
                total += times.user + times.system
            totals[part] = total
        return totals

    def used(self) -> dict[str, float]:
        now = self._now()
        return {part: now[part] - self.start[part] for part in now}


def _cpu_per_call(function, calls: int) -> float:
    """CPU microseconds per call of `function` (this process: the client side of the database for PostgreSQL,
    all of it for SQLite)."""
    started = time.process_time()
    for _ in range(calls):
        function()
    return (time.process_time() - started) * 1e6 / calls


def statement_costs(token: str, calls: int, rounds: int) -> dict[str, dict[str, float]]:
    """CPU microseconds per call of each operation, `rounds` rounds (the operations taking turns within a
    round); the median and the spread of the rounds."""
    import statistics

    from django.contrib.auth import get_user_model
    from django.db import transaction

    from accounts.tokens import token_lookup
    from audit.services import AuditAction, audit_record
    from jobs.models import Connection, Job, JobKind, JobState
    from jobs.selectors import access
    from jobs.services.jobs import job_transition
    from jobs.services.tally import TallyChange, tally_add
    from metrics import recorder, store

    user = get_user_model().objects.get(username="bench-analyst")
    default = Connection.default()
    team_id = access.memberships(user)[0].team_id
    token_lookup(token)  # notes the token as used, so that the lookups measured write nothing

    def memberships() -> None:
        fresh = get_user_model()(pk=user.pk, username=user.username, is_active=True)
        access.memberships(fresh)

    def audit() -> None:
        with transaction.atomic():
            audit_record(action=AuditAction.SUBMIT, actor=user, target_type="job", target_id="1")

    def flush_request() -> None:
        # What a submission's request leaves to flush: one counter.
        recorder.inc("omlpy_job_transitions_total", to_state=JobState.QUEUED)
        store.flush()

    def flush_sweep() -> None:
        # What a poll sweep leaves to flush: requests by code, their durations, polls, the sweep.
        for index in range(10):
            recorder.inc("omlpy_oml_requests_total", operation="status", code="200")
            recorder.observe("omlpy_oml_request_duration_seconds", 0.01 * (index + 1), operation="status")
        recorder.inc("omlpy_polls_total", 10)
        recorder.inc("omlpy_sweeps_total")
        store.flush()

    def tally() -> None:
        with transaction.atomic():
            tally_add([TallyChange(JobState.SUCCEEDED, default.pk, JobKind.DO_EVAL, team_id, jobs=1)])

    from django.test import Client

    client = Client(SERVER_NAME="localhost")
    body = json.dumps(Clients.BODY)

    def submission() -> None:
        # The whole API call in this process: middleware, token, validation, job, audit entry, publish.
        answer = client.post(
            "/api/v1/jobs", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
        )
        if answer.status_code != 201:
            raise RuntimeError(f"submission answered {answer.status_code}: {answer.content[:200]!r}")

    running: list[int] = []

    def finish() -> None:
        job_transition(job_id=running.pop(), to_state=JobState.SUCCEEDED, reason="bench", expected=[JobState.RUNNING])

    operations = {
        "api_submission": submission,
        "token_lookup": token_lookup,
        "default_connection": Connection.default,
        "memberships": memberships,
        "audit_record": audit,
        "metrics_flush_request": flush_request,
        "metrics_flush_sweep": flush_sweep,
        "tally_add": tally,
        "job_last_transition": finish,
    }
    samples: dict[str, list[float]] = {name: [] for name in operations}
    for _ in range(rounds):
        Job.objects.bulk_create(
            Job(
                owner=user,
                team_id=team_id,
                connection=default,
                kind=JobKind.DO_EVAL,
                script_name="bench",
                state=JobState.RUNNING,
            )
            for _ in range(calls + 1)
        )
        running[:] = Job.objects.filter(state=JobState.RUNNING).values_list("pk", flat=True)
        for name, operation in operations.items():
            if name == "token_lookup":
                samples[name].append(_cpu_per_call(lambda lookup=operation: lookup(token), calls))
            else:
                operation()  # warm
                samples[name].append(_cpu_per_call(operation, calls))
    return {
        name: {"median_us": round(statistics.median(values), 1), "rounds_us": [round(v, 1) for v in values]}
        for name, values in samples.items()
    }


def statements_main(args) -> None:
    figures: dict = {"bench": "submit-statements", "machine": machine(), "calls": args.calls, "rounds": args.rounds}
    figures["load_before"] = os.getloadavg()
    with scratch_dir("bench-statements-") as scratch:
        env = {**PRODUCTION_LIKE_ENV, "VAR_DIR": str(scratch / "var"), "STATIC_ROOT": str(scratch / "static")}
        if args.postgres:
            recreate_database(args.database)
            env["DATABASE_URL"] = database_url(args.database)
            figures["backend"] = "postgres"
        else:
            env["DATABASE_URL"] = f"sqlite:///{scratch / 'var' / 'db.sqlite3'}"
            figures["backend"] = "sqlite"
        try:
            setup_django(env)
            token = prepare()
            figures["cpu_us_per_call"] = statement_costs(token, args.calls, args.rounds)
        finally:
            if args.postgres:
                from django.db import connections

                connections.close_all()
                drop_database(args.database)
    figures["load_after"] = os.getloadavg()
    for name, value in figures["cpu_us_per_call"].items():
        print(f"{name:24} {value['median_us']:9.1f} us  {value['rounds_us']}")
    print_figures(figures)


def cleanup_redis(queue: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(f"{REDIS_BASE_URL}/{REDIS_DB}")
    for pattern in (f"*{queue}*", f"*{prefix}*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL + Redis instead of SQLite defaults")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0, help="the measured period")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--rules", type=int, default=0, help="notification rules of the analyst")
    parser.add_argument("--statements", action="store_true", help="CPU per call of each statement, no server")
    parser.add_argument("--database", default=f"omlpy_bench_statements_{os.getpid()}", help="with --statements")
    parser.add_argument("--calls", type=int, default=2000, help="with --statements: calls per round")
    parser.add_argument("--rounds", type=int, default=3, help="with --statements")
    args = parser.parse_args()
    if args.statements:
        statements_main(args)
        return

    backend = "postgres+redis" if args.postgres else "sqlite+filesystem"
    figures: dict = {"bench": "submit", "backend": backend, "machine": machine()}
    queue = f"omlpy-bench-submit-{os.getpid()}"
    db_name = f"omlpy_bench_submit_{os.getpid()}"
    with scratch_dir("bench-submit-") as scratch:
        env = {**PRODUCTION_LIKE_ENV, "VAR_DIR": str(scratch / "var"), "STATIC_ROOT": str(scratch / "static")}
        if args.postgres:
            figures["postgres"] = postgres_version()
            figures["redis"] = redis_version()
            recreate_database(db_name)
            env.update(
                {
                    "DATABASE_URL": database_url(db_name),
                    "CELERY_BROKER_URL": f"{REDIS_BASE_URL}/{REDIS_DB}",
                    "REDIS_URL": f"{REDIS_BASE_URL}/{REDIS_DB}",
                    "CELERY_QUEUE": queue,
                    "CACHE_KEY_PREFIX": queue,
                }
            )
        else:
            env["DATABASE_URL"] = f"sqlite:///{scratch / 'var' / 'db.sqlite3'}"
        server = None
        clients = None
        try:
            setup_django(env)
            token = prepare(args.rules)
            server = WebServer(env, scratch, workers=args.workers, threads=args.threads).start()
            clients = Clients(f"{server.base_url}/api/v1/jobs", token, args.clients)
            clients.start()
            time.sleep(args.warmup)
            cpu = CpuShares(server.proc.pid, db_name if args.postgres else None)
            clients.measuring.set()
            started = time.perf_counter()
            time.sleep(args.seconds)
            clients.measuring.clear()
            measured = time.perf_counter() - started
            shares = cpu.used()
            clients.join()

            from jobs.models import Job

            stored = Job.objects.count()
            statuses = dict(clients.statuses)
            created = statuses.get("201", 0)
            figures.update(
                {
                    "conditions": f"{args.clients} client threads, gunicorn {args.workers} workers x {args.threads} "
                    f"threads, {args.warmup:g} s warm-up, {measured:.1f} s measured; no Celery worker running "
                    "(submit messages wait in the broker)",
                    "clients": args.clients,
                    "notification_rules": args.rules,
                    "submissions_per_second": round(created / measured, 1),
                    "answers": statuses,
                    "errors": sum(n for status, n in statuses.items() if status != "201"),
                    "latency": summary_ms(clients.latencies) if clients.latencies else {},
                    "cpu_ms_per_submission": {
                        part: round(seconds * 1000 / max(created, 1), 2) for part, seconds in shares.items()
                    },
                    "jobs_stored": stored,
                    "jobs_answered_201": clients.created_total,
                    "target_per_second": TARGET_PER_SECOND,
                }
            )
            figures["meets_target"] = figures["submissions_per_second"] >= TARGET_PER_SECOND
            print(
                f"{backend}: {figures['submissions_per_second']} submissions/s with {args.clients} clients "
                f"(target {TARGET_PER_SECOND}/s); answers {statuses}; latency {figures['latency']}; "
                f"{stored} jobs stored for {clients.created_total} answers 201; CPU ms per submission "
                f"{figures['cpu_ms_per_submission']}"
            )
        finally:
            if clients is not None:
                clients.join()
            if server is not None:
                server.stop()
            if args.postgres:
                from django.db import connections

                connections.close_all()
                drop_database(db_name)
                cleanup_redis(queue, queue)
    print_figures(figures)


if __name__ == "__main__":
    main()
