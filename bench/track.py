"""How well one worker tracks many in-flight asynchronous jobs.

Starts its own system (gunicorn serving the embedded engine, one Celery worker with beat) on a throwaway
database, submits timer jobs (the engine completes them after a given duration without holding an execution
slot), waits for every job to end, and prints figures; the last line is one JSON object.

    python bench/track.py                          # 1,000 jobs of 5-60 s on SQLite + filesystem broker
    python bench/track.py --db postgres --jobs 10000 --min 60 --max 600
    python bench/track.py --strategy --db postgres  # fixed 2 s vs backoff vs learned, side by side
    python bench/track.py --rules 3                  # the same with 3 notification rules for the job owner

With `--rules N` the owner has N notification rules (a webhook to a receiver in this process for succeeded and
failed, in-app for slow and stuck, email for failed and timed_out, repeated in that order), so that the figures
show what notifications cost: compare `worker_cpu_ms_per_job` with and without.

--strategy reports the six recurring scripts in its headline figures, prints each one's figures, and the spread
of the headline figures over bootstrap resamples of the runs (the 5th and 95th percentiles of the poll ratio
and of each p95 lag).
--strategy also runs one script with two call signatures (about 20 s and 200 s, each varying by about 10 %):
its history mixes both, so only expectations learned per signature can poll it well. Every run prints the
database's growth (table sizes before the jobs and after them, and the poll logs' share).

Lag is the time from the engine finishing a job (its due time) to the dashboard recording `succeeded`.
Polls are the status requests the dashboard sent for a job (they equal the engine's count).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Recurring scripts of the --strategy workload: median durations (seconds) spread from 10 to 300.
MEDIANS = [10, 20, 45, 90, 180, 300]
SPREAD = 0.10  # lognormal sigma: durations vary by about 10 % around each median
HISTORY_RUNS = 20
# One script, two call signatures: the same timer called with arguments that take about 20 s and 200 s.
TWO_SIGNATURES_OWNER = "TWO_SIGNATURES"
TWO_SIGNATURE_MEDIANS = [20, 200]


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def configure(args) -> dict:
    """Environment for this process and the ones it starts, before Django is imported."""
    var_dir = Path(tempfile.mkdtemp(prefix="omlpy-track-"))
    env = {
        "VAR_DIR": str(var_dir),
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "ENCRYPTION_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "AUDIT_HMAC_KEYS": secrets.token_urlsafe(50),
        "OMLENGINE_ENABLED": "true",
        "OMLENGINE_TIMER_SCRIPTS": "true",
        "SECURE_COOKIES": "false",
        "LOG_LEVEL": "WARNING",
        "JOBS_SWEEP_BATCH": str(args.batch),
        "JOBS_SWEEP_THREADS": str(args.threads),
        "JOBS_SWEEP_INTERVAL": str(args.sweep_interval),
        "JOBS_POLL_CAP": str(args.cap),
        "CELERY_QUEUE": f"track-{os.getpid()}",
        # --rules: the webhook receiver listens on loopback in this process.
        "NOTIFY_ALLOW_PRIVATE_TARGETS": "true",
        "CACHE_KEY_PREFIX": f"track-{os.getpid()}",
        "DJANGO_SETTINGS_MODULE": "omlpy_dashboard.settings",
    }
    if args.db == "postgres":
        name = args.pg_database or f"omlpy_track_{os.getpid()}"
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", f"CREATE DATABASE {name}"], check=True)
        env |= {
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{args.broker_db}",
            "REDIS_URL": f"redis://127.0.0.1:6379/{args.cache_db}",
        }
        env["_DROP_DATABASE"] = name
    os.environ.update({k: v for k, v in env.items() if not k.startswith("_")})
    return env


def cleanup(env: dict) -> None:
    import shutil

    if env.get("_DROP_DATABASE"):
        from django.db import connections

        connections.close_all()
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-q",
                "-c",
                f"DROP DATABASE IF EXISTS {env['_DROP_DATABASE']} WITH (FORCE)",
            ],
            check=False,
        )
    shutil.rmtree(env["VAR_DIR"], ignore_errors=True)


class RssSampler(threading.Thread):
    """Samples the worker's resident memory (main process plus its pool children), and the CPU time it and
    the whole machine have used since the sampler started."""

    def __init__(self, pid: int):
        import psutil

        super().__init__(daemon=True)
        self.pid = pid
        self.peak_total = 0.0
        self.peak_single = 0.0
        self.peak_pss = 0.0
        self.worker_cpu: dict[int, float] = {}
        self.machine_start = psutil.cpu_times()
        self.stop = threading.Event()

    def machine_busy_seconds(self) -> float:
        import psutil

        now = psutil.cpu_times()
        idle = (now.idle - self.machine_start.idle) + (now.iowait - self.machine_start.iowait)
        return sum(now) - sum(self.machine_start) - idle

    def run(self) -> None:
        import psutil

        while not self.stop.is_set():
            # A process may end between listing and reading it: sample again next time.
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
                sizes = [p.memory_info().rss / 1e6 for p in procs if p.is_running()]
                self.peak_total = max(self.peak_total, sum(sizes))
                self.peak_single = max(self.peak_single, max(sizes, default=0))
                # RSS counts the pages a forked pool process shares with its parent twice; PSS shares them out.
                self.peak_pss = max(self.peak_pss, sum(p.memory_full_info().pss / 1e6 for p in procs))
                for process in procs:
                    times = process.cpu_times()
                    self.worker_cpu[process.pid] = times.user + times.system
            self.stop.wait(0.5)


def sweep_query_ms() -> float | None:
    """Time of the sweep's claim query at this moment (EXPLAIN ANALYZE on PostgreSQL)."""
    from django.db import connection

    sql = (
        "SELECT id, connection_id FROM jobs_job WHERE state = 'pending' AND next_poll_at <= %s "
        "ORDER BY next_poll_at LIMIT 500"
    )
    from django.utils import timezone

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", [timezone.now()])
            return float(cursor.fetchone()[0][0]["Execution Time"])
        started = time.perf_counter()
        cursor.execute(sql, [timezone.now()])
        cursor.fetchall()
        return (time.perf_counter() - started) * 1000


def register_recurring_scripts() -> list[str]:
    """The timer script registered under one owner per median: a separate, recurring script each."""
    from django.core.management import call_command

    source = ROOT / "omlengine" / "seed_scripts" / "timer.py"
    owners = [f"NIGHTLY_{median}" for median in MEDIANS]
    for owner in owners:
        call_command(
            "omlengine_script",
            "add",
            "timer",
            str(source),
            "--owner",
            owner,
            "--global",
            "--description",
            f"recurring job of about {owner.split('_')[1]} s",
            verbosity=0,
        )
    return owners


def seed_history(connection, user, owners: list[str], rng: random.Random) -> None:
    """Past successful runs of each recurring script: what the dashboard knows from earlier days.

    Rows are written as if they ran after now, then every timestamp is moved back by the same span in one
    UPDATE: the table's constraints (finished after created, and so on) hold at every step.
    """
    from datetime import timedelta

    from django.db.models import F
    from django.utils import timezone

    from jobs.models import Job
    from jobs.selectors.stats import script_stats_record

    base = timezone.now() + timedelta(minutes=1)
    rows = []
    for owner, median in zip(owners, MEDIANS, strict=True):
        for run in range(HISTORY_RUNS):
            duration = median * math.exp(rng.gauss(0, SPREAD))
            # The statistics hold the same runs, as they would after those days: learned polling reads them.
            script_stats_record(
                connection_id=connection.pk,
                script_name="timer",
                script_owner=owner,
                seconds=duration,
                at=timezone.now(),
            )
            accepted = base + timedelta(hours=run)
            done = accepted + timedelta(seconds=duration)
            rows.append(
                Job(
                    owner=user,
                    connection=connection,
                    kind="do_eval",
                    script_name="timer",
                    script_owner=owner,
                    parameters={"seconds": round(duration, 3)},
                    state="succeeded",
                    submitted_at=accepted,
                    oml_accepted_at=accepted,
                    oml_finished_at=done,
                    result_fetched_at=done,
                    finished_at=done,
                )
            )
    ids = [job.pk for job in Job.objects.bulk_create(rows)]
    back = timedelta(days=HISTORY_RUNS + 2)
    Job.objects.filter(pk__in=ids).update(
        created_at=F("created_at") - back,
        submitted_at=F("submitted_at") - back,
        oml_accepted_at=F("oml_accepted_at") - back,
        oml_finished_at=F("oml_finished_at") - back,
        result_fetched_at=F("result_fetched_at") - back,
        finished_at=F("finished_at") - back,
    )


def register_two_signature_script() -> None:
    from django.core.management import call_command

    call_command(
        "omlengine_script",
        "add",
        "timer",
        str(ROOT / "omlengine" / "seed_scripts" / "timer.py"),
        "--owner",
        TWO_SIGNATURES_OWNER,
        "--global",
        "--description",
        "one script called with two signatures: about 20 s and 200 s",
        verbosity=0,
    )


def two_signature_parameters(median: float) -> dict:
    # The engine draws each run's duration around `seconds` (jitter: lognormal sigma): equal arguments, varying runs.
    return {"seconds": median, "jitter": SPREAD}


def seed_two_signature_history(connection, rng: random.Random) -> None:
    """Past runs of the two-signature script, as the statistics hold them after earlier days: alternating
    between its signatures, so that the script's own history is an even mix of 20 s and 200 s runs."""
    from types import SimpleNamespace

    from django.utils import timezone

    from jobs.selectors.stats import call_signature, script_stats_record

    for _ in range(HISTORY_RUNS):
        for median in TWO_SIGNATURE_MEDIANS:
            call = SimpleNamespace(
                kind="do_eval",
                parameters=two_signature_parameters(median),
                input_sql="",
                rows=None,
                group_by="",
                times=None,
                connection_id=connection.pk,
            )
            script_stats_record(
                connection_id=connection.pk,
                script_name="timer",
                script_owner=TWO_SIGNATURES_OWNER,
                signature=call_signature(call),
                seconds=median * math.exp(rng.gauss(0, SPREAD)),
                at=timezone.now(),
            )


def table_sizes() -> dict[str, int]:
    """Bytes of each of the dashboard's tables (jobs_*), indexes and TOAST included on PostgreSQL; on SQLite
    the pages of each table and its indexes (dbstat), or the whole file where dbstat is not built in."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'r' AND n.nspname = 'public' AND c.relname LIKE 'jobs%%'"
            )
            return dict(cursor.fetchall())
        try:
            cursor.execute(
                "SELECT COALESCE(m.tbl_name, s.name), SUM(s.pgsize) FROM dbstat s "
                "LEFT JOIN sqlite_master m ON m.name = s.name GROUP BY 1"
            )
            return {name: size for name, size in cursor.fetchall() if name.startswith("jobs")}
        except Exception:  # dbstat is a compile-time option of SQLite
            path = connection.settings_dict["NAME"]
            return {"(database file)": os.path.getsize(path)}


def growth_report(before: dict[str, int], after: dict[str, int], jobs: list) -> dict:
    """Table growth over the run, per job, and what the jobs' poll logs weigh (as JSON text)."""
    grown = {name: after.get(name, 0) - before.get(name, 0) for name in sorted(set(before) | set(after))}
    logs = [len(json.dumps(job.poll_log, separators=(",", ":"))) for job in jobs]
    polls = [job.poll_count for job in jobs]
    kept = [len(job.poll_log.get("first", [])) + len(job.poll_log.get("last", [])) for job in jobs]
    total = sum(grown.values())
    rows = {}
    from django.db import connection

    if connection.vendor == "postgresql":
        # Table files grow with every row version a poll's UPDATE leaves behind until vacuum reuses the space;
        # what a job row itself weighs now, and its poll log's part of it, is the bound that stays.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT avg(pg_column_size(j.*)), avg(pg_column_size(j.poll_log)) FROM jobs_job j WHERE j.id = ANY(%s)",
                [[job.pk for job in jobs]],
            )
            row_bytes, log_bytes = cursor.fetchone()
        rows = {
            "job_row_bytes_mean": round(float(row_bytes or 0), 1),
            "poll_log_stored_bytes_mean": round(float(log_bytes or 0), 1),
        }
    return rows | {
        "table_bytes_before": sum(before.values()),
        "table_bytes_after": sum(after.values()),
        "growth_bytes": total,
        "growth_bytes_per_job": round(total / len(jobs), 1) if jobs else None,
        "growth_by_table": {name: size for name, size in grown.items() if size},
        "poll_log_bytes_mean": round(sum(logs) / len(logs), 1) if logs else None,
        "poll_log_bytes_max": max(logs, default=None),
        "polls_per_job_max": max(polls, default=None),
        "poll_log_entries_kept_max": max(kept, default=None),
    }


def make_rules(user, count: int):
    """`count` notification rules of `user`, cycling through three kinds; returns the webhook receiver."""
    from django.contrib.auth import get_user_model

    from notifications.services import RuleInput, rule_create
    from tests.support.receivers import WebhookReceiver

    # A copy of its own: the rules' access checks keep what they read of the user on the object.
    user = get_user_model().objects.get(pk=user.pk)
    receiver = WebhookReceiver().start()
    kinds = [
        {"channel": "webhook", "target": receiver.url, "events": ["succeeded", "failed"]},
        {"channel": "inapp", "events": ["slow", "stuck"]},
        {"channel": "email", "target": "ops@example.com", "events": ["failed", "timed_out"]},
    ]
    for index in range(count):
        rule_create(user=user, data=RuleInput(**kinds[index % len(kinds)]))
    return receiver


def oml_requests_per_job(jobs: int) -> dict[str, float]:
    """omlpy_oml_requests_total per job by operation, from the counters every process flushed (the worker's
    requests: the bench process itself sends none to OML)."""
    from metrics.models import MetricCounter

    by_operation: dict[str, float] = {}
    for labels, value in MetricCounter.objects.filter(name="omlpy_oml_requests_total").values_list("labels", "value"):
        operation = json.loads(labels).get("operation", "")
        by_operation[operation] = by_operation.get(operation, 0.0) + value
    by_operation["all"] = sum(by_operation.values())
    return {operation: round(value / max(jobs, 1), 3) for operation, value in sorted(by_operation.items())}


def summarise(jobs, engine_finish: dict) -> dict:
    lags = []
    polls = []
    for job in jobs:
        polls.append(job.poll_count)
        finished = engine_finish.get(job.oml_job_id)
        if job.state == "succeeded" and finished and job.finished_at:
            lags.append((job.finished_at - finished).total_seconds())
    return {
        "jobs": len(jobs),
        "succeeded": sum(job.state == "succeeded" for job in jobs),
        "polls_per_job_mean": round(sum(polls) / len(polls), 2) if polls else None,
        "polls_per_job_median": percentile(polls, 0.5),
        "polls_per_job_max": max(polls, default=None),
        "lag_p50_s": _round(percentile(lags, 0.5)),
        "lag_p95_s": _round(percentile(lags, 0.95)),
        "lag_max_s": _round(max(lags, default=None)),
    }


def _polls_and_lags(jobs, engine_finish: dict) -> tuple[list[int], list[float]]:
    polls, lags = [], []
    for job in jobs:
        polls.append(job.poll_count)
        finished = engine_finish.get(job.oml_job_id)
        if job.state == "succeeded" and finished and job.finished_at:
            lags.append((job.finished_at - finished).total_seconds())
    return polls, lags


def per_script(jobs, strategies: dict, engine_finish: dict) -> dict:
    """--strategy: polls per job (mean) and p95 lag of each recurring script under each strategy."""
    table: dict[str, dict] = {}
    for owner in sorted({job.script_owner for job in jobs}, key=lambda name: int(name.split("_")[1])):
        row = {}
        for strategy in ("fixed", "backoff", "learned"):
            chosen = [job for job in jobs if job.script_owner == owner and strategies[job.pk] == strategy]
            polls, lags = _polls_and_lags(chosen, engine_finish)
            row[strategy] = {
                "polls_mean": round(sum(polls) / len(polls), 2) if polls else None,
                "lag_p95_s": _round(percentile(lags, 0.95)),
            }
        table[owner] = row
    return table


def bootstrap_spread(jobs, strategies: dict, engine_finish: dict, resamples: int, seed: int) -> dict:
    """--strategy: how much the headline figures move with the draw of runs: the 5th and 95th percentiles, over
    `resamples` bootstrap resamples (runs drawn with replacement within each script and strategy), of the
    fixed-to-learned poll ratio and of each strategy's p95 lag."""
    rng = random.Random(seed)
    cells: dict[tuple[str, str], list[tuple[int, float | None]]] = {}
    for job in jobs:
        job_polls, job_lags = _polls_and_lags([job], engine_finish)
        run = (job_polls[0], job_lags[0] if job_lags else None)
        cells.setdefault((strategies[job.pk], job.script_owner), []).append(run)
    ratios: list[float] = []
    p95s: dict[str, list[float]] = {"fixed": [], "learned": []}
    for _ in range(resamples):
        polls_sum: dict[str, float] = {"fixed": 0.0, "learned": 0.0}
        counts: dict[str, int] = {"fixed": 0, "learned": 0}
        lags: dict[str, list[float]] = {"fixed": [], "learned": []}
        for (strategy, _owner), runs in cells.items():
            if strategy not in polls_sum:
                continue
            for polls, lag in (rng.choice(runs) for _ in runs):
                polls_sum[strategy] += polls
                counts[strategy] += 1
                if lag is not None:
                    lags[strategy].append(lag)
        if polls_sum["learned"] and counts["fixed"]:
            ratios.append((polls_sum["fixed"] / counts["fixed"]) / (polls_sum["learned"] / counts["learned"]))
        for strategy in p95s:
            if lags[strategy]:
                p95s[strategy].append(percentile(lags[strategy], 0.95))
    spread = {"resamples": resamples, "poll_ratio_p5_p95": [_round(percentile(ratios, q)) for q in (0.05, 0.95)]}
    for strategy, values in p95s.items():
        spread[f"{strategy}_lag_p95_s_p5_p95"] = [_round(percentile(values, q)) for q in (0.05, 0.95)]
    return spread


def _round(value):
    return None if value is None else round(value, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--min", type=float, default=5.0, help="shortest timer duration (s)")
    parser.add_argument("--max", type=float, default=60.0, help="longest timer duration (s)")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--strategy", action="store_true", help="compare fixed 2 s, backoff and learned polling")
    parser.add_argument("--per-script", type=int, default=30, help="--strategy: jobs per script and strategy")
    parser.add_argument("--resamples", type=int, default=2000, help="--strategy: bootstrap resamples for the spread")
    parser.add_argument("--broker-db", type=int, default=11, help="--db postgres: Redis database of the broker")
    parser.add_argument("--cache-db", type=int, default=12, help="--db postgres: Redis database of the cache")
    parser.add_argument("--batch", type=int, default=1000, help="JOBS_SWEEP_BATCH")
    parser.add_argument("--threads", type=int, default=32, help="JOBS_SWEEP_THREADS")
    parser.add_argument("--sweep-interval", type=float, default=1.0)
    parser.add_argument("--cap", type=float, default=10.0, help="JOBS_POLL_CAP")
    parser.add_argument("--concurrency", type=int, default=1, help="pool processes of the one Celery worker")
    parser.add_argument("--submit-threads", type=int, default=4, help="threads creating the jobs")
    parser.add_argument("--settle", type=float, default=120.0, help="seconds allowed after the last due time")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pg-database", default="", help="--db postgres: the database to create and drop")
    parser.add_argument("--rules", type=int, default=0, help="notification rules of the jobs' owner")
    args = parser.parse_args()

    # Stopped from outside, still stop everything this script started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    env = configure(args)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import close_old_connections
    from django.db.models import Count

    from accounts.models import Membership, Team
    from jobs.models import Job
    from jobs.services.jobs import connection_save, job_create
    from jobs.services.specs import parse_job_request
    from omlengine.models import EngineJob
    from tests.stack import Stack

    stack = None
    sampler = None
    started = time.monotonic()
    try:
        call_command("migrate", verbosity=0)
        call_command("omlengine_seed", verbosity=0)
        rng = random.Random(args.seed)
        user = get_user_model().objects.create_user("bench", password=secrets.token_urlsafe(12))
        # Connections are granted to teams: every connection below is granted to the bench user's.
        team = Team.objects.create(name="Bench")
        Membership.objects.create(user=user, team=team, role=Membership.Role.ANALYST)
        stack = Stack(log_dir=Path(env["VAR_DIR"]) / "logs")
        stack.start_web()
        receiver = make_rules(user, args.rules)

        def connection(name: str, strategy: str = "", default: bool = False):
            return connection_save(
                name=name,
                base_url=stack.base_url,
                username="OMLUSER",
                password="omluser",  # noqa: S106
                poll_budget=5000,
                poll_strategy=strategy,
                is_default=default,
                teams=[team],
            )

        plan: list[tuple[object, dict]] = []  # (connection, request)
        if args.strategy:
            owners = register_recurring_scripts()
            connections = {s: connection(f"engine ({s})", s, s == "learned") for s in ("fixed", "backoff", "learned")}
            seed_history(connections["learned"], user, owners, rng)
            register_two_signature_script()
            seed_two_signature_history(connections["learned"], rng)
            for _ in range(args.per_script):
                for owner, median in zip(owners, MEDIANS, strict=True):
                    seconds = round(median * math.exp(rng.gauss(0, SPREAD)), 3)
                    for strategy, conn in connections.items():
                        plan.append((conn, {"script_owner": owner, "parameters": {"seconds": seconds}, "_s": strategy}))
                for median in TWO_SIGNATURE_MEDIANS:
                    for strategy, conn in connections.items():
                        request = {"script_owner": TWO_SIGNATURES_OWNER, "parameters": two_signature_parameters(median)}
                        plan.append((conn, request | {"_s": strategy}))
            horizon = max(MEDIANS) * math.exp(3 * SPREAD)
        else:
            conn = connection("engine", "", True)
            for _ in range(args.jobs):
                plan.append((conn, {"parameters": {"seconds": round(rng.uniform(args.min, args.max), 3)}}))
            horizon = args.max

        sizes_before = table_sizes()
        # The worker alone is measured; beat runs beside it as its own process, as in production.
        worker = stack.start_worker(concurrency=args.concurrency, beat=False)
        stack.start_beat()
        sampler = RssSampler(worker.pid)
        sampler.start()

        submit_started = time.monotonic()
        strategies: dict[int, str] = {}

        def submit_one(item) -> None:
            conn, request = item
            label = request.pop("_s", "")
            spec = parse_job_request({"connection": conn.pk, "kind": "do_eval", "script": "timer", **request})
            job = job_create(owner=user, spec=spec)
            strategies[job.pk] = label
            close_old_connections()

        with ThreadPoolExecutor(max_workers=args.submit_threads) as pool:
            list(pool.map(submit_one, plan))
        submit_seconds = time.monotonic() - submit_started
        print(f"submitted {len(plan)} jobs in {submit_seconds:.1f} s", flush=True)

        measured = Job.objects.filter(pk__in=list(strategies))
        deadline = time.monotonic() + horizon + args.settle
        sweep_ms: list[float] = []
        peak_in_flight = 0
        while time.monotonic() < deadline:
            active = measured.exclude(state__in=["succeeded", "failed", "timed_out", "cancelled"]).count()
            in_flight = measured.filter(state="pending").count()
            peak_in_flight = max(peak_in_flight, in_flight)
            if in_flight:
                sweep_ms.append(sweep_query_ms())
            print(
                f"  t={time.monotonic() - started:6.0f}s active={active} pending={in_flight} "
                f"worker_rss={sampler.peak_total:.0f}MB",
                flush=True,
            )
            if active == 0:
                break
            time.sleep(5)

        jobs = list(measured)
        figures_growth = growth_report(sizes_before, table_sizes(), jobs)
        engine_finish = dict(
            EngineJob.objects.filter(pk__in=[j.oml_job_id for j in jobs if j.oml_job_id]).values_list(
                "pk", "finished_at"
            )
        )
        engine_finish = {str(k): v for k, v in engine_finish.items()}
        terminal = {"succeeded", "failed", "timed_out", "cancelled"}
        figures = {
            "db": args.db,
            "jobs": len(plan),
            "lost": len(plan) - len(jobs),
            # Not ended when the measurement stopped: late (the worker had not caught up), not stranded.
            "unfinished_at_cutoff": sum(job.state not in terminal for job in jobs),
            "failed": sum(job.state == "failed" for job in jobs),
            "peak_in_flight": peak_in_flight,
            "worker_peak_rss_mb": round(sampler.peak_total, 1),
            "worker_peak_rss_single_process_mb": round(sampler.peak_single, 1),
            "worker_peak_pss_mb": round(sampler.peak_pss, 1),
            "sweep_query_ms_p50": _round(percentile(sweep_ms, 0.5)),
            "sweep_query_ms_max": _round(max(sweep_ms, default=None)),
            "submit_seconds": round(submit_seconds, 1),
            "wall_seconds": round(time.monotonic() - started, 1),
            # Where the two cores went: the worker (main + pool process) against the whole machine, which also
            # runs the engine (web and worker), PostgreSQL, Redis, beat and this script.
            "worker_cpu_seconds": round(sum(sampler.worker_cpu.values()), 1),
            "machine_busy_cpu_seconds": round(sampler.machine_busy_seconds(), 1),
            "worker_cpu_ms_per_job": round(sum(sampler.worker_cpu.values()) * 1000 / max(len(jobs), 1), 2),
            "notification_rules": args.rules,
            # Requests the worker sent to OML per job, by operation (submit, status, result, scripts, token...).
            "oml_requests_per_job": oml_requests_per_job(len(jobs)),
        }
        if args.rules:
            from notifications.models import Notification

            figures["notifications"] = dict(
                Notification.objects.values_list("state").annotate(n=Count("id")).order_by()
            )
            figures["webhooks_received"] = receiver.hits
            figures["notification_errors"] = dict(
                Notification.objects.exclude(last_error="").values_list("last_error").annotate(n=Count("id")).order_by()
            )
        if args.strategy:
            by_strategy = {}
            # The headline figures are the six recurring scripts'; the two-signature script is reported below.
            recurring = [job for job in jobs if job.script_owner != TWO_SIGNATURES_OWNER]
            for strategy in ("fixed", "backoff", "learned"):
                chosen = [job for job in recurring if strategies[job.pk] == strategy]
                by_strategy[strategy] = summarise(chosen, engine_finish)
                print(f"{strategy:8s} {json.dumps(by_strategy[strategy])}")
            fixed, learned = by_strategy["fixed"], by_strategy["learned"]
            if fixed["polls_per_job_mean"] and learned["polls_per_job_mean"]:
                figures["poll_ratio_fixed_to_learned"] = round(
                    fixed["polls_per_job_mean"] / learned["polls_per_job_mean"], 2
                )
            figures["strategies"] = by_strategy
            figures["per_script"] = per_script(recurring, strategies, engine_finish)
            for owner, figures_of_script in figures["per_script"].items():
                print(f"  {owner:12s} {json.dumps(figures_of_script)}")
            figures["spread"] = bootstrap_spread(recurring, strategies, engine_finish, args.resamples, args.seed)
            print(f"spread   {json.dumps(figures['spread'])}")
            # The two-signature script alone: the learned schedule must be no worse than the others for it.
            two = {}
            for strategy in ("fixed", "backoff", "learned"):
                chosen = [
                    job for job in jobs if strategies[job.pk] == strategy and job.script_owner == TWO_SIGNATURES_OWNER
                ]
                two[strategy] = {
                    f"{median}s": summarise([j for j in chosen if j.parameters.get("seconds") == median], engine_finish)
                    for median in TWO_SIGNATURE_MEDIANS
                }
                two[strategy]["all"] = summarise(chosen, engine_finish)
                print(f"two signatures {strategy:8s} {json.dumps(two[strategy]['all'])}")
            figures["two_signatures"] = two
        else:
            summary = summarise(jobs, engine_finish)
            figures |= {k: v for k, v in summary.items() if k != "jobs"}
        figures["database_growth"] = figures_growth
        print(f"database growth {json.dumps(figures_growth)}")
        print(json.dumps(figures))
    finally:
        if sampler:
            sampler.stop.set()
        if stack:
            stack.stop()
        cleanup(env)


if __name__ == "__main__":
    main()
