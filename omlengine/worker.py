"""The engine worker: claims queued async jobs and runs each in its own limited process.

Concurrency is bounded per worker: at most OMLENGINE_WORKER_SLOTS jobs at once, and at most the service
level's degree (LOW 2, MEDIUM 4, HIGH 8) of jobs of that level. Several workers may share the database: a
claim is a conditional UPDATE, so a job runs in exactly one of them.

A job whose worker dies is marked failed (500, "the engine worker running this job stopped"), never re-run:
a script may have side effects, and OML itself does not re-run jobs. A worker notices at once when the dead
worker ran on its own host, otherwise when the job's heartbeat is older than STALE_AFTER.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections
from django.utils import timezone

from . import execution, runner, services
from .errors import ENGINE_FAILURE, SCRIPT_NOT_FOUND, EngineError, bad_request
from .models import EngineJob, EngineScript
from .protocol import SERVICE_CONCURRENCY, Execution

logger = logging.getLogger(__name__)
State = EngineJob.State

POLL_SECONDS = 0.2
HEARTBEAT_SECONDS = 1.0
STALE_AFTER = timedelta(seconds=60)
ORPHAN_CHECK_SECONDS = 10.0
PURGE_SECONDS = 600.0


@dataclass
class _Running:
    service: str
    thread: threading.Thread
    cancel: threading.Event = field(default_factory=threading.Event)


class EngineWorker:
    """One worker process's loop; `run()` returns after SIGTERM or SIGINT once its jobs are settled."""

    def __init__(self, *, slots: int, grace_seconds: float):
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.slots = slots
        self.grace_seconds = grace_seconds
        self.stopping = threading.Event()
        self.running: dict[object, _Running] = {}
        self._due: dict[str, float] = {}

    def run(self) -> None:
        """
        1. Start the fork server (pandas preloaded) and fail the jobs that dead workers left running.
        2. Until SIGTERM or SIGINT, every POLL_SECONDS:
           a. forget the jobs whose thread ended (the thread wrote the outcome);
           b. every HEARTBEAT_SECONDS, mark our jobs alive and stop those that were deleted (DELETE);
           c. claim queued jobs, oldest first, while a slot and the service level allow;
           d. now and then, fail orphaned jobs again and purge jobs past retention.
        3. Stop claiming, give running jobs `grace_seconds`, then kill the rest and mark them failed.
        """
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopping.set())
        runner.warm_up()
        logger.info("engine worker %s started with %d slots", self.name, self.slots)
        while not self.stopping.is_set():
            try:
                self._tick()
            except DatabaseError:
                # The database went away or a query failed: running jobs carry on; try again shortly.
                logger.exception("engine worker %s: database error; retrying", self.name)
                connections.close_all()
                self.stopping.wait(1.0)
            self.stopping.wait(POLL_SECONDS)
        self._shut_down()

    def _tick(self) -> None:
        close_old_connections()
        self._reap()
        self._every("heartbeat", HEARTBEAT_SECONDS, self._heartbeat)
        self._every("orphans", ORPHAN_CHECK_SECONDS, self._fail_orphans)
        self._every("purge", PURGE_SECONDS, self._purge)
        self._claim()

    def _every(self, what: str, seconds: float, action: Callable[[], None]) -> None:
        now = time.monotonic()
        if now >= self._due.get(what, 0.0):
            self._due[what] = now + seconds
            action()

    def _reap(self) -> None:
        for job_id in [job_id for job_id, job in self.running.items() if not job.thread.is_alive()]:
            del self.running[job_id]

    def _heartbeat(self) -> None:
        if not self.running:
            return
        services.job_heartbeat(job_ids=list(self.running), worker=self.name)
        deleted = EngineJob.objects.filter(pk__in=list(self.running), state=State.DELETED).values_list("pk", flat=True)
        for job_id in deleted:
            self.running[job_id].cancel.set()

    def _claim(self) -> None:
        free = self.slots - len(self.running)
        if free <= 0:
            return
        busy = Counter(job.service for job in self.running.values())
        queued = EngineJob.objects.filter(state=State.QUEUED).order_by("created_at").values_list("pk", "service")
        for job_id, service in queued[: free * 4]:
            if len(self.running) >= self.slots:
                break
            if busy[service] >= SERVICE_CONCURRENCY.get(service, 1):
                continue
            if services.job_claim(job_id=job_id, worker=self.name):
                busy[service] += 1
                self._start(job_id, service)

    def _start(self, job_id: object, service: str) -> None:
        cancel = threading.Event()
        thread = threading.Thread(target=_run_job, args=(job_id, cancel), name=f"job-{job_id}", daemon=True)
        self.running[job_id] = _Running(service=service, thread=thread, cancel=cancel)
        thread.start()

    def _fail_orphans(self) -> None:
        stale_before = timezone.now() - STALE_AFTER
        running = EngineJob.objects.filter(state=State.RUNNING, is_timer=False).exclude(worker=self.name)
        for job_id, worker, heartbeat_at in running.values_list("pk", "worker", "heartbeat_at"):
            if _worker_is_dead(worker) or heartbeat_at is None or heartbeat_at < stale_before:
                logger.warning("job %s: its worker %s stopped; marking it failed", job_id, worker)
                services.job_fail(job_id=job_id, error=_worker_stopped())

    def _purge(self) -> None:
        services.jobs_purge(before=timezone.now() - timedelta(days=settings.OMLENGINE_RESULT_RETENTION_DAYS))

    def _shut_down(self) -> None:
        logger.info("engine worker %s stopping; %d job(s) running", self.name, len(self.running))
        deadline = time.monotonic() + self.grace_seconds
        for job in self.running.values():
            job.thread.join(max(0.0, deadline - time.monotonic()))
        for job_id, job in self.running.items():
            if job.thread.is_alive():
                job.cancel.set()
                job.thread.join(10)
                services.job_fail(job_id=job_id, error=_worker_stopped())


def _run_job(job_id: object, cancel: threading.Event) -> None:
    """One job's thread: run it and write its outcome, unless it was cancelled (deleted, or the worker stops)."""
    try:
        job = EngineJob.objects.get(pk=job_id)
        script = EngineScript.objects.filter(name=job.script_name, owner=job.script_owner).first()
        if script is None:
            raise bad_request(f"Script {job.script_name} was removed before the job ran.", SCRIPT_NOT_FOUND)
        result = execution.run(
            script=script,
            execution=Execution.from_json(job.request),
            wall_seconds=job.timeout,
            cancelled=cancel.is_set,
        )
        services.job_succeed(job_id=job_id, result=result)
    except runner.Cancelled:
        pass
    except EngineError as exc:
        services.job_fail(job_id=job_id, error=exc)
    except Exception as exc:  # an engine bug must fail the job, not leave it running forever
        logger.exception("job %s failed in the engine", job_id)
        services.job_fail(job_id=job_id, error=EngineError(500, ENGINE_FAILURE, f"The engine failed: {exc!r}"))
    finally:
        connections.close_all()


def _worker_stopped() -> EngineError:
    return EngineError(500, ENGINE_FAILURE, "The engine worker running this job stopped; the job did not finish.")


def _worker_is_dead(worker: str) -> bool:
    """True only when the worker ran on this host and its process is gone."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
