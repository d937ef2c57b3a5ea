"""What one status request costs the embedded engine: server CPU per `GET .../jobs/{id}`, running and finished.

    .venv/bin/python bench/engine_status.py [--requests 3000] [--threads 4] [--db sqlite|postgres]
        [--root DIR]

1. Makes a throwaway VAR_DIR (and, with --db postgres, recreates the database --pg-name), migrates it and
   seeds the engine (`omlengine_seed`) with the manage.py of --root (default: this tree; give another
   checkout to measure its engine the same way).
2. Starts gunicorn from --root (one worker, four threads, DEBUG off, the engine on, timer scripts on).
3. Gets a token as OMLUSER and creates 200 async timer jobs: 100 that run for an hour (each status request
   answers 202) and 100 of no duration (302 once due, after the first request completes them).
4. Warms up, then sends --requests status requests spread over the jobs of each kind from --threads threads,
   reading the CPU time (user + system) of the server's processes before and after (psutil).
5. Stops the server and removes the temporary directory (and the database).

The last line printed is one JSON object: for each kind, CPU milliseconds per request, requests per second
and the latency (p50 / p95 / max), and the machine with its load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from _common import (
    PRODUCTION_LIKE_ENV,
    ROOT,
    database_url,
    drop_database,
    free_port,
    gunicorn_argv,
    machine,
    recreate_database,
    scratch_dir,
    stop_process,
    summary_ms,
    wait_for,
)

JOBS_PER_KIND = 100


def server_cpu_seconds(pid: int) -> float:
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def create_jobs(session: requests.Session, base: str, seconds: float) -> list[str]:
    url = f"{base}/oml/api/py-scripts/v1/do-eval/timer"
    locations = []
    for _ in range(JOBS_PER_KIND):
        answer = session.post(url, json={"asyncFlag": True, "parameters": json.dumps({"seconds": seconds})}, timeout=30)
        if answer.status_code != 201:
            raise SystemExit(f"creating a timer job answered {answer.status_code}: {answer.text[:300]}")
        locations.append(answer.headers["Location"])
    return locations


def measure(session: requests.Session, locations: list[str], count: int, threads: int, pid: int) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    def one(i: int) -> None:
        started = time.perf_counter()
        answer = session.get(locations[i % len(locations)], allow_redirects=False, timeout=30)
        latencies.append(time.perf_counter() - started)
        statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

    cpu_before = server_cpu_seconds(pid)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(count)))
    wall = time.perf_counter() - started
    cpu = server_cpu_seconds(pid) - cpu_before
    return {
        "requests": count,
        "statuses": {str(code): n for code, n in sorted(statuses.items())},
        "server_cpu_ms_per_request": round(cpu * 1000 / count, 3),
        "requests_per_s": round(count / wall, 1),
        "latency": summary_ms(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="status requests per kind of job")
    parser.add_argument("--threads", type=int, default=4, help="client threads sending them")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--pg-name", default="omlpy_bench_engine_status", help="database recreated for --db postgres")
    parser.add_argument("--root", type=Path, default=ROOT, help="the tree whose engine is measured")
    args = parser.parse_args()
    root = args.root.resolve()

    with scratch_dir("omlpy-bench-engine-status-") as var_dir:
        port = free_port()
        env = {
            **os.environ,
            **PRODUCTION_LIKE_ENV,
            "OMLENGINE_ENABLED": "true",
            "OMLENGINE_TIMER_SCRIPTS": "true",
            "VAR_DIR": str(var_dir),
            "DATABASE_URL": f"sqlite:///{var_dir / 'bench.sqlite3'}",
            "STATIC_ROOT": str(var_dir / "static"),
            "PORT": str(port),
        }
        if args.db == "postgres":
            recreate_database(args.pg_name)
            env["DATABASE_URL"] = database_url(args.pg_name)
        server = None
        try:
            for command in (["migrate", "--noinput", "-v", "0"], ["omlengine_seed", "-v", "0"]):
                subprocess.run([sys.executable, "manage.py", *command], cwd=root, env=env, check=True)
            with open(var_dir / "web.log", "ab") as log:
                server = subprocess.Popen(
                    gunicorn_argv(port, workers=1, threads=4),
                    cwd=root,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: requests.get(f"{base}/livez", timeout=2).ok, timeout=90, what="the web server")
            session = requests.Session()
            grant = session.post(
                f"{base}/omlusers/api/oauth2/v1/token",
                json={"grant_type": "password", "username": "OMLUSER", "password": "omluser"},
                timeout=30,
            )
            grant.raise_for_status()
            session.headers["Authorization"] = f"Bearer {grant.json()['accessToken']}"
            kinds = {"running_202": create_jobs(session, base, 3600), "finished_302": create_jobs(session, base, 0)}
            figures: dict = {"db": args.db, "load_avg_1m_before": round(os.getloadavg()[0], 2)}
            for name, locations in kinds.items():
                measure(session, locations, max(len(locations), args.requests // 10), args.threads, server.pid)
                figures[name] = measure(session, locations, args.requests, args.threads, server.pid)
                print(f"{name}: {json.dumps(figures[name])}", flush=True)
            figures["machine"] = machine()
            print(json.dumps(figures))
        finally:
            stop_process(server)
            if args.db == "postgres":
                drop_database(args.pg_name)


if __name__ == "__main__":
    main()
