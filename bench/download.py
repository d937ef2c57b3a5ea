"""Download a ~100 MB result as JSON, CSV, XLSX and Parquet over HTTP and measure the web server's memory.

    .venv/bin/python bench/download.py [--mb 100] [--formats json,csv-first,csv-repeat,csv-unrecorded,xlsx,parquet]

1. Makes a throwaway SQLite database under a temporary VAR_DIR, migrates it, and stores one job whose
   result is a list of row records of about --mb megabytes (through job_result_store, in chunks; the body is
   generated piece by piece, never whole), described in one pass as the worker does (shape, rows, columns).
   A second job holds the same body stored without its columns, as results stored before they were
   recorded are (`csv-unrecorded`: its first CSV download reads the body once more to find them). A third
   holds a small result of the same rows, downloaded in every format before anything is measured.
2. Starts the real web server (gunicorn, one gthread worker) on that database as a subprocess.
3. Signs in through the login form, downloads the small result in every format (the worker's first Parquet
   download loads pyarrow: that one-off growth is reported as `warmup`), then downloads
   /jobs/<uuid>/result.<format> for each format, one after another, reading the answers in 1 MB pieces, while
   a thread samples the resident memory of the server's processes (psutil).
   `csv-first` is the result's first CSV download: written from the body while it is sent, and stored as the
   result's CSV rendition. `csv-repeat` is the next download of the same CSV: the stored rendition, copied.
   Every download of a result but its first is a repeat, so `csv-repeat` is what the bench reports as the
   CSV download (`csv_times_json`); the first download's ratio is reported beside it (`csv_first_times_json`).
4. Stops the server and removes the temporary directory.

The last line printed is one JSON object: for each format the bytes received, the seconds taken, the
server's peak memory growth in MB over its resident size just before that download, and the ratio of its
seconds to the JSON download's in the same run; the bytes of the stored CSV rendition; and the machine's load
average.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.stack import free_port  # noqa: E402 - the project root is on the path from here on

USERNAME = "bench"
PASSWORD = secrets.token_urlsafe(12)


def bench_environment(var_dir: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "VAR_DIR": str(var_dir),
        "DATABASE_URL": f"sqlite:///{var_dir / 'bench.sqlite3'}",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ENCRYPTION_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "AUDIT_HMAC_KEYS": secrets.token_urlsafe(50),
        "SECURE_COOKIES": "false",
        "SECURE_HSTS_SECONDS": "0",
        "OMLENGINE_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        "PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    }


def record_chunks(target_bytes: int, rows_per_piece: int = 5000):
    """`{"result":[{...},...]}` in pieces of a few hundred KB; yields (piece, rows so far)."""
    yield b'{"result":['
    written, row = 0, 0
    while written < target_bytes:
        parts = []
        for _ in range(rows_per_piece):
            record = {
                "ID": row,
                "SEPAL_LENGTH": round(4.3 + (row % 36) / 10, 1),
                "SPECIES": ("setosa", "versicolor", "virginica")[row % 3],
                "SCORE": row * 0.000123,
                "OK": row % 7 != 0,
                "NOTE": f'row {row}, with a comma and "quotes"',
            }
            parts.append(("," if row else "") + json.dumps(record, separators=(",", ":")))
            row += 1
        piece = "".join(parts).encode()
        written += len(piece)
        yield piece
    yield b"]}"


def prepare(target_bytes: int) -> tuple[str, str, str, int, int]:
    """Migrate, create the user and two jobs with the same result, one stored with its columns and one without,
    and a job with a small result; returns (job uuid, uuid of the job without columns, uuid of the small one,
    body bytes, rows)."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omlpy_dashboard.settings")
    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from jobs.models import Job, JobResult
    from jobs.results.bodies import describe_body, result_source
    from jobs.services.jobs import connection_save, job_result_store, job_transition
    from jobs.states import JobKind, JobState

    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)
    owner = get_user_model().objects.create_user(USERNAME, password=PASSWORD)
    connection = connection_save(
        name="Bench",
        base_url="http://127.0.0.1:9",
        username="OMLUSER",
        password=secrets.token_urlsafe(8),
        is_default=True,
    )
    jobs = []
    for _ in range(3):
        job = Job.objects.create(
            owner=owner,
            connection=connection,
            kind=JobKind.TABLE_APPLY,
            script_name="bench_records",
            input_sql="select 1",
        )
        job_transition(job_id=job.pk, to_state=JobState.RUNNING, reason="bench", submitted_at=timezone.now())
        jobs.append(job)
    result = job_result_store(job_id=jobs[0].pk, chunks=record_chunks(target_bytes), content_type="application/json")
    started = time.monotonic()
    described = describe_body(result_source(result))
    print(
        f"stored {result.size_bytes} bytes in {result.chunk_count} chunks; {described.shape}, {described.rows} rows,"
        f" columns {described.columns} (described in {time.monotonic() - started:.1f} s, one pass)",
        flush=True,
    )
    JobResult.objects.filter(pk=result.pk).update(
        shape=described.shape, row_count=described.rows, columns=described.columns
    )
    unrecorded = job_result_store(job_id=jobs[1].pk, chunks=result_source(result)(), content_type="application/json")
    JobResult.objects.filter(pk=unrecorded.pk).update(shape=described.shape, row_count=described.rows, columns=None)
    small = list(record_chunks(10_000, rows_per_piece=50))
    small_described = describe_body(small)
    job_result_store(
        job_id=jobs[2].pk,
        chunks=small,
        content_type="application/json",
        shape=small_described.shape,
        row_count=small_described.rows,
        columns=small_described.columns,
    )
    for job in jobs:
        job_transition(job_id=job.pk, to_state=JobState.SUCCEEDED, reason="bench", result_fetched_at=timezone.now())
    return str(jobs[0].uuid), str(jobs[1].uuid), str(jobs[2].uuid), result.size_bytes, described.rows


def rendition_bytes(job_uuid: str) -> int:
    """The bytes of the CSV rendition stored for a job's result."""
    from django.db.models import Sum

    from jobs.models import JobResultRendition

    renditions = JobResultRendition.objects.filter(format="csv", result__job__uuid=job_uuid)
    return renditions.aggregate(n=Sum("size_bytes"))["n"] or 0


class MemorySampler(threading.Thread):
    """Samples the summed resident memory of a process and its children every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.02):
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.running = True

    def rss(self) -> int:
        import psutil

        total = 0
        for proc in [self.process, *self.process.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)


def download(session, url: str, server_pid: int) -> dict:
    sampler = MemorySampler(server_pid)
    baseline = sampler.rss()
    sampler.start()
    started = time.monotonic()
    received = 0
    with session.get(url, stream=True, timeout=600) as response:
        response.raise_for_status()
        for piece in response.iter_content(1024 * 1024):
            received += len(piece)
    seconds = time.monotonic() - started
    sampler.running = False
    sampler.join()
    return {
        "bytes": received,
        "seconds": round(seconds, 2),
        "mb_per_s": round(received / seconds / 1e6, 1),
        "peak_memory_growth_mb": round((sampler.peak - baseline) / 1e6, 1),
        "server_rss_before_mb": round(baseline / 1e6, 1),
    }


def sign_in(session, base: str) -> None:
    session.get(f"{base}/accounts/login/", timeout=30).raise_for_status()
    answer = session.post(
        f"{base}/accounts/login/",
        data={"username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{base}/accounts/login/"},
        timeout=30,
    )
    answer.raise_for_status()
    if "sessionid" not in session.cookies:
        raise RuntimeError("sign-in failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0, help="approximate size of the result body in MB")
    parser.add_argument(
        "--formats",
        default="json,csv-first,csv-repeat,csv-unrecorded,xlsx,parquet",
        help="comma-separated, downloaded in this order; csv-first is the result's first CSV download (which "
        "stores its rendition), csv-repeat the next one (the rendition, copied), csv-unrecorded the first CSV "
        "download of the result stored without its columns",
    )
    args = parser.parse_args()
    formats = [fmt.strip() for fmt in args.formats.split(",") if fmt.strip()]

    import requests

    var_dir = Path(tempfile.mkdtemp(prefix="omlpy-bench-download-"))
    port = free_port()
    env = bench_environment(var_dir, port)
    os.environ.update(env)
    server = None
    try:
        job_uuid, unrecorded_uuid, small_uuid, size, rows = prepare(int(args.mb * 1_000_000))
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "omlpy_dashboard.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--worker-class",
                "gthread",
                "--threads",
                "4",
                "--timeout",
                "600",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(var_dir / "web.log", "wb"),  # noqa: SIM115
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{base}/accounts/login/", timeout=10)
                break
            except requests.RequestException:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((var_dir / "web.log").read_text()) from None
                time.sleep(0.2)
        session = requests.Session()
        sign_in(session, base)
        # Warm the worker (imports, templates, connection) before measuring: the result page, and the small
        # result in every format (the first Parquet download loads pyarrow, once per worker).
        session.get(f"{base}/jobs/{job_uuid}/result/", timeout=600).raise_for_status()
        figures: dict = {"result_bytes": size, "rows": rows, "load_avg_1m_before": round(os.getloadavg()[0], 2)}
        figures["warmup"] = {
            fmt: download(session, f"{base}/jobs/{small_uuid}/result.{fmt}", server.pid)["peak_memory_growth_mb"]
            for fmt in ("json", "csv", "xlsx", "parquet")
        }
        print(f"warm-up on a small result, peak memory growth MB: {json.dumps(figures['warmup'])}", flush=True)
        for fmt in formats:
            uuid, extension = (unrecorded_uuid, "csv") if fmt == "csv-unrecorded" else (job_uuid, fmt)
            if fmt in ("csv-first", "csv-repeat"):
                extension = "csv"
            figures[fmt] = download(session, f"{base}/jobs/{uuid}/result.{extension}", server.pid)
            if "json" in figures and fmt != "json":
                figures[fmt]["times_json"] = round(figures[fmt]["seconds"] / figures["json"]["seconds"], 2)
            print(f"{fmt}: {json.dumps(figures[fmt])}", flush=True)
        # The CSV download is the repeat: every download of a result but its first copies the stored rendition.
        for key, fmt in (("csv_times_json", "csv-repeat"), ("csv_first_times_json", "csv-first")):
            if "times_json" in figures.get(fmt, {}):
                figures[key] = figures[fmt]["times_json"]
        figures["csv_rendition_bytes"] = rendition_bytes(job_uuid)
        figures["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
        print(json.dumps(figures))
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
