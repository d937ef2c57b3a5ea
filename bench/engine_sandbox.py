"""What isolating scripts costs a sync call, and what the token endpoint's timing says about user names.

    .venv/bin/python bench/engine_sandbox.py [--calls 50] [--grants 20] [--baseline-root DIR]

1. For each server measured, makes a throwaway VAR_DIR with a SQLite database, migrates it and seeds the
   engine (`omlengine_seed`) with that tree's own manage.py.
2. Starts gunicorn (one worker, four threads, DEBUG off, the engine on) from this tree twice, with
   OMLENGINE_SANDBOX=on and =off, and, with --baseline-root, once from that tree (e.g. a checkout of the code
   before isolation, which ignores OMLENGINE_SANDBOX).
3. Signs in as OMLUSER, warms up (the first call starts the fork server), then times --calls sequential sync
   calls of each kind below, one at a time: `do-eval return_df` (no input) and `table-apply my_predict` over
   `select * from IRIS` (an input query of 150 rows).
4. Times --grants password grants with a wrong password for the known user OMLUSER and as many for a user
   name that does not exist, alternating (throttling raised out of the way), on the sandboxed server and on
   the baseline.
5. Stops every server and removes the temporary directories.

The last line printed is one JSON object with every figure (milliseconds, p50 / p95 / max) and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests
from _common import (
    PRODUCTION_LIKE_ENV,
    ROOT,
    free_port,
    gunicorn_argv,
    machine,
    scratch_dir,
    stop_process,
    summary_ms,
    wait_for,
)

CALLS = {
    "do_eval_return_df": ("do-eval", "return_df", {"parameters": '{"num": 10, "scale": 1}'}),
    "table_apply_iris": ("table-apply", "my_predict", {"input": "select * from IRIS"}),
}
UNTHROTTLED = {
    "OMLENGINE_TOKEN_THROTTLE_FAILURES": "1000000",
    "OMLENGINE_TOKEN_THROTTLE_IP_FAILURES": "1000000",
}


class EngineServer:
    """gunicorn from `root` with the engine on, on a database of its own under `var_dir`."""

    def __init__(self, root: Path, var_dir: Path, extra: dict[str, str]):
        self.root = root
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **PRODUCTION_LIKE_ENV,
            **UNTHROTTLED,
            **extra,
            "OMLENGINE_ENABLED": "true",
            "VAR_DIR": str(var_dir),
            "DATABASE_URL": f"sqlite:///{var_dir / 'bench.sqlite3'}",
            "STATIC_ROOT": str(var_dir / "static"),
            "PORT": str(self.port),
        }
        self.log = var_dir / "web.log"
        self.proc: subprocess.Popen | None = None

    def prepare(self) -> None:
        for command in (["migrate", "--noinput", "-v", "0"], ["omlengine_seed", "-v", "0"]):
            subprocess.run([sys.executable, "manage.py", *command], cwd=self.root, env=self.env, check=True)

    def start(self) -> EngineServer:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                gunicorn_argv(self.port, workers=1, threads=4),
                cwd=self.root,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise SystemExit(f"web server exited:\n{self.log.read_text(errors='replace')[-3000:]}")
            try:
                return requests.get(f"{self.base_url}/livez", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(answers, timeout=90, what="the web server")
        return self

    def stop(self) -> None:
        stop_process(self.proc)

    def grant(self, username: str, password: str) -> requests.Response:
        body = {"grant_type": "password", "username": username, "password": password}
        return requests.post(f"{self.base_url}/omlusers/api/oauth2/v1/token", json=body, timeout=60)


def time_calls(server: EngineServer, calls: int) -> dict[str, dict[str, float]]:
    token = server.grant("OMLUSER", "omluser").json()["accessToken"]
    headers = {"Authorization": f"Bearer {token}"}
    figures = {}
    for name, (kind, script, body) in CALLS.items():
        url = f"{server.base_url}/oml/api/py-scripts/v2/{kind}/{script}"
        for _ in range(3):  # the first starts the fork server
            requests.post(url, json=body, headers=headers, timeout=300).raise_for_status()
        seconds = []
        for _ in range(calls):
            started = time.perf_counter()
            answer = requests.post(url, json=body, headers=headers, timeout=300)
            seconds.append(time.perf_counter() - started)
            answer.raise_for_status()
        figures[name] = summary_ms(seconds)
        print(f"  {name}: {figures[name]}", flush=True)
    return figures


def time_grants(server: EngineServer, grants: int) -> dict[str, dict[str, float]]:
    known, unknown = [], []
    server.grant("NO_SUCH_USER", "warm-up")
    for _ in range(grants):
        for username, seconds in (("OMLUSER", known), ("NO_SUCH_USER", unknown)):
            started = time.perf_counter()
            answer = server.grant(username, "a-wrong-password")
            seconds.append(time.perf_counter() - started)
            if answer.status_code != 401:
                raise SystemExit(f"a wrong password for {username} answered {answer.status_code}: {answer.text}")
    figures = {"known_user_wrong_password": summary_ms(known), "unknown_user": summary_ms(unknown)}
    figures["unknown_over_known_p50"] = round(
        figures["unknown_user"]["p50_ms"] / figures["known_user_wrong_password"]["p50_ms"], 3
    )
    print(f"  token grants: {figures}", flush=True)
    return figures


def measure(label: str, root: Path, extra: dict[str, str], args: argparse.Namespace, grants: bool) -> dict:
    print(f"{label} ({root})", flush=True)
    with scratch_dir("omlpy-bench-engine-") as var_dir:
        server = EngineServer(root, var_dir, extra)
        server.prepare()
        server.start()
        try:
            figures: dict = {"calls": time_calls(server, args.calls)}
            if grants:
                figures["grants"] = time_grants(server, args.grants)
            return figures
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50, help="timed sync calls of each kind per server")
    parser.add_argument("--grants", type=int, default=20, help="timed grants for each of the two user names")
    parser.add_argument("--baseline-root", type=Path, help="another checkout of the project to measure alike")
    args = parser.parse_args()
    report: dict = {"machine": machine(), "calls_per_kind": args.calls, "grants_per_name": args.grants}
    report["sandbox_on"] = measure("this tree, OMLENGINE_SANDBOX=on", ROOT, {"OMLENGINE_SANDBOX": "on"}, args, True)
    report["sandbox_off"] = measure("this tree, OMLENGINE_SANDBOX=off", ROOT, {"OMLENGINE_SANDBOX": "off"}, args, False)
    if args.baseline_root:
        report["baseline"] = measure("baseline", args.baseline_root.resolve(), {}, args, True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
