"""A /metrics scrape over 1,000,000 jobs in PostgreSQL: its time, its queries, and that omlpy_jobs is exact.

1. Uses the database of bench/history.py (its `fill`: a year of jobs, a few per cent still active), filled once
   and reused; then migrates and recounts the finished-jobs tally (`fill` writes rows directly, past the tally).
2. Adds counter rows as a busy deployment would have them (every operation, code and state; histograms).
3. Starts gunicorn with DEBUG off and a METRICS_TOKEN, and times scrapes over HTTP (sequential, after a
   warm-up), with the time the server spent rendering (X-Scrape-Duration-Ms).
4. Renders one scrape in-process, capturing its SQL: the number of statements and the slowest's plan; and
   checks omlpy_jobs against COUNT(*) of the jobs table, per state.

The last line printed is one JSON object with every figure.

    .venv/bin/python bench/metrics.py [--jobs 1000000] [--repeat 50] [--reset]
"""

from __future__ import annotations

import argparse
import time

import requests
from _common import (
    PRODUCTION_LIKE_ENV,
    WebServer,
    database_exists,
    database_url,
    machine,
    postgres_version,
    print_figures,
    recreate_database,
    scratch_dir,
    setup_django,
    summary_ms,
)
from history import DB_NAME, fill

TOKEN = "bench-only-metrics-token"  # noqa: S105 - the benchmark's own throwaway token
TARGET_P95_MS = 100


def busy_counters() -> int:
    """Counter and histogram rows of a deployment that has seen every operation, code and state."""
    from metrics import recorder, store
    from metrics.catalog import OML_OPERATIONS

    codes = ["200", "201", "202", "302", "400", "401", "404", "429", "500", "502", "503", "504", "error"]
    for operation in OML_OPERATIONS:
        for code in codes:
            recorder.inc("omlpy_oml_requests_total", 1000, operation=operation, code=code)
        for seconds in (0.003, 0.02, 0.2, 2, 20, 90):
            recorder.observe("omlpy_oml_request_duration_seconds", seconds, operation=operation)
    for state in ("queued", "submitting", "pending", "fetching", "running", "succeeded", "failed", "timed_out"):
        recorder.inc("omlpy_job_transitions_total", 1000, to_state=state)
    for seconds in (0.5, 5, 50, 500, 5000, 50000):
        recorder.observe("omlpy_job_oml_duration_seconds", seconds)
        recorder.observe("omlpy_job_detection_lag_seconds", seconds / 100)
    recorder.inc("omlpy_polls_total", 10**7)
    return store.flush()


def exactness() -> dict:
    """omlpy_jobs summed per state against COUNT(*) of the jobs table."""
    from collections import Counter

    from django.db.models import Count

    from jobs.selectors import gauges

    connections, teams = gauges._names()
    from_gauge: Counter = Counter()
    for (state, _connection, _kind), n in gauges.job_counts(connections, teams).items():
        from_gauge[state] += n
    from jobs.models import Job

    from_table = dict(Job.objects.values_list("state").annotate(n=Count("id")).order_by())
    return {"gauge": dict(from_gauge), "table": from_table, "equal": dict(from_gauge) == from_table}


def capture() -> dict:
    """The statements of one scrape, each run again under EXPLAIN ANALYZE: the slowest by the server's own
    execution time (a captured wall time on a busy machine says more about the scheduler than the plan)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from omlpy_dashboard.metrics_endpoint import _Collector

    with CaptureQueriesContext(connection) as captured:
        list(_Collector().collect())
    plans = []
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query["sql"])
            plan = "\n".join(row[0] for row in cursor.fetchall())
            executed = float(plan.rsplit("Execution Time: ", 1)[1].split(" ")[0])
            plans.append((executed, query["sql"], plan))
    executed, sql, plan = max(plans)
    return {
        "queries": len(captured.captured_queries),
        "query_ms": [round(float(q["time"]) * 1000, 1) for q in captured.captured_queries],
        "explain_ms": [round(ms, 2) for ms, _, _ in plans],
        "slowest_sql": sql[:600],
        "slowest_plan": plan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50, help="timed scrapes")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--reset", action="store_true", help="drop and refill the benchmark database")
    parser.add_argument("--database", default=DB_NAME)
    args = parser.parse_args()

    figures: dict = {"bench": "metrics", "machine": machine(), "postgres": postgres_version()}
    with scratch_dir("bench-metrics-") as scratch:
        env = {
            **PRODUCTION_LIKE_ENV,
            "DATABASE_URL": database_url(args.database),
            "VAR_DIR": str(scratch / "var"),
            "METRICS_TOKEN": TOKEN,
            "CONN_MAX_AGE": "3600",
        }
        refill = args.reset or not database_exists(args.database)
        if refill:
            recreate_database(args.database)
        setup_django(env)
        from django.core.management import call_command

        if refill:
            figures.update(fill(args.jobs))
        call_command("migrate", verbosity=0)
        from jobs.services.tally import tally_rebuild

        started = time.monotonic()
        figures["tally_rows"] = tally_rebuild()
        figures["tally_rebuild_s"] = round(time.monotonic() - started, 1)
        figures["counter_series"] = busy_counters()
        figures["exact"] = exactness()
        print(f"omlpy_jobs equals COUNT(*) per state: {figures['exact']['equal']}")

        server = WebServer(env, scratch, workers=2, threads=4)
        try:
            server.start()
            session = requests.Session()
            headers = {"Authorization": f"Bearer {TOKEN}"}
            for _ in range(args.warmup):
                session.get(f"{server.base_url}/metrics", headers=headers, timeout=30).raise_for_status()
            wall, rendered = [], []
            for _ in range(args.repeat):
                began = time.perf_counter()
                answer = session.get(f"{server.base_url}/metrics", headers=headers, timeout=30)
                wall.append(time.perf_counter() - began)
                answer.raise_for_status()
                rendered.append(float(answer.headers["X-Scrape-Duration-Ms"]) / 1000)
            figures["scrape_bytes"] = len(answer.content)
        finally:
            server.stop()
        figures["scrape_http"] = summary_ms(wall)
        figures["scrape_rendering"] = summary_ms(rendered)
        figures["sql"] = capture()

    print(f"scrape over HTTP: {figures['scrape_http']}")
    print(f"rendering on the server: {figures['scrape_rendering']}")
    print(f"{figures['sql']['queries']} statements, ms each: {figures['sql']['query_ms']}")
    print(f"the same, as EXPLAIN ANALYZE executed them: {figures['sql']['explain_ms']}")
    print("slowest statement's plan:")
    print(figures["sql"]["slowest_plan"])
    figures["target_p95_ms"] = TARGET_P95_MS
    figures["meets_p95"] = figures["scrape_http"]["p95_ms"] <= TARGET_P95_MS
    print_figures(figures)


if __name__ == "__main__":
    main()
