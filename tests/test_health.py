"""Liveness, readiness and the sweep's age: what each probe answers, and to whom."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError

from omlpy_dashboard import health
from tests.stack import ROOT, Stack


@pytest.mark.django_db
def test_livez_answers_without_touching_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/livez")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_probes_answer_whatever_host_the_kubelet_addresses_and_without_the_https_redirect(client, settings):
    settings.ALLOWED_HOSTS = ["omlpy.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    for path in ("/livez", "/readyz", "/healthz"):
        response = client.get(path, HTTP_HOST="10.244.1.7:8000")
        assert response.status_code == 200, (path, response.status_code)
    # Every other page still checks the host.
    assert client.get("/accounts/login/", HTTP_HOST="10.244.1.7:8000").status_code == 400


@pytest.mark.django_db
def test_probes_refuse_writes(client):
    assert client.post("/readyz").status_code == 405


@pytest.mark.django_db
def test_healthz_reports_the_age_of_the_last_completed_sweep(client):
    cache.delete(health.SWEEP_COMPLETED_KEY)
    assert client.get("/healthz").json()["sweep_age_seconds"] is None
    health.sweep_completed(at=time.time() - 42)
    age = client.get("/healthz").json()["sweep_age_seconds"]
    assert 42 <= age < 60


def test_sweep_probe_passes_on_a_recent_sweep_and_fails_on_an_old_one_or_none(capsys):
    cache.delete(health.SWEEP_COMPLETED_KEY)
    with pytest.raises(CommandError, match="no poll sweep has completed yet"):
        call_command("sweep_probe", "--max-age", "60")
    health.sweep_completed(at=time.time() - 300)
    with pytest.raises(CommandError, match=r"completed 30\d\.\d s ago \(limit 60 s\)"):
        call_command("sweep_probe", "--max-age", "60")
    health.sweep_completed()
    call_command("sweep_probe", "--max-age", "60")
    assert "ok: the last poll sweep completed" in capsys.readouterr().out


def test_sweep_probe_exits_non_zero_for_the_container_runtime(tmp_path):
    # A cache of its own: the suite's running workers record their sweeps in the shared one.
    env = {**os.environ, "CACHE_DIR": str(tmp_path)}
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "manage.py", "sweep_probe", "--max-age", "5"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "no poll sweep has completed yet" in done.stderr


@pytest.mark.django_db(transaction=True)
def test_readyz_answers_503_with_the_reason_when_the_broker_is_unreachable(tmp_path):
    stack = Stack(log_dir=tmp_path, env={"CELERY_BROKER_URL": "redis://127.0.0.1:1/0"})
    try:
        stack.start_web()
        ready = requests.get(stack.url("/readyz"), timeout=30)
        live = requests.get(stack.url("/livez"), timeout=30)
    finally:
        stack.stop()
    assert live.status_code == 200
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not ready"
    assert body["checks"]["database"] == "ok"
    assert body["reason"].startswith("broker failed")
