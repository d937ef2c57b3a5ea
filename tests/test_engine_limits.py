"""The embedded engine under tight limits, short-lived tokens and injected faults: its own web server and worker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from omlengine.models import EngineCall, EngineJob
from tests.stack import Stack
from tests.test_engine_protocol import EngineClient, add_script

TIGHT = {
    "OMLENGINE_WALL_SECONDS": "15",
    "OMLENGINE_CPU_SECONDS": "1",
    "OMLENGINE_MEMORY_MB": "200",
    "OMLENGINE_TOKEN_LIFETIME": "2",
}
SHORT_WALL_SECONDS = 2


def _web_only_stack(name: str, env: dict[str, str]) -> Stack:
    """A web server of its own; no engine worker, so that it never claims the jobs of the main stack's tests."""
    stack = Stack(log_dir=Path(settings.VAR_DIR) / f"test-logs-{name}", env=env)
    stack.start_web()
    return stack


@pytest.fixture(scope="module")
def tight_stack(django_db_setup, django_db_blocker):
    """A web server with seconds-long limits (sync calls run inside it) and two-second tokens."""
    stack = _web_only_stack("tight", TIGHT)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def short_wall_stack(django_db_setup, django_db_blocker):
    """A web server whose sync calls get a two-second wall clock: the limit is met without waiting long."""
    stack = _web_only_stack("short-wall", {"OMLENGINE_WALL_SECONDS": str(SHORT_WALL_SECONDS)})
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def unavailable_stack(django_db_setup, django_db_blocker):
    """A web server whose engine answers every execution request with an injected 503."""
    stack = _web_only_stack("faults", {"OMLENGINE_FAULTS": "503=1"})
    yield stack
    stack.stop()


@pytest.fixture
def tight(transactional_db, tight_stack) -> EngineClient:
    call_command("omlengine_seed", verbosity=0)
    return EngineClient(tight_stack.base_url).sign_in()


def still_serves(engine: EngineClient) -> bool:
    engine.sign_in()
    answer = engine.call("do-eval", "return_df", {"parameters": '{"num": 2, "scale": 1}'})
    return answer.json() == {"result": [{"ID": 0, "RES": 0.0}, {"ID": 1, "RES": 1.0}]}


@pytest.fixture
def short_wall(transactional_db, short_wall_stack) -> EngineClient:
    call_command("omlengine_seed", verbosity=0)
    return EngineClient(short_wall_stack.base_url).sign_in()


def test_a_script_over_its_wall_clock_limit_is_killed_and_reported_and_the_engine_keeps_serving(short_wall):
    started = time.monotonic()
    answer = short_wall.call("do-eval", "sleep_seconds", {"parameters": '{"seconds": 60}'})
    assert answer.status_code == 500
    assert f"wall-clock limit of {SHORT_WALL_SECONDS} s" in answer.json()["errorMessage"]
    assert time.monotonic() - started < 30
    assert still_serves(short_wall)


def test_a_script_over_its_memory_limit_is_stopped_and_reported_and_the_engine_keeps_serving(tight, tmp_path):
    add_script(tmp_path, "hog", "def hog():\n    block = bytearray(1024 * 1024 * 1024)\n    return len(block)\n")
    # Signed in again: adding the script can outlast the stack's two-second tokens on a busy machine.
    answer = tight.sign_in().call("do-eval", "hog")
    assert answer.status_code == 500
    assert "memory limit of 200 MB" in answer.json()["errorMessage"]
    assert still_serves(tight)


def test_a_script_over_its_cpu_limit_is_killed_and_reported_and_the_engine_keeps_serving(tight, tmp_path):
    add_script(tmp_path, "spin", "def spin():\n    while True:\n        pass\n")
    answer = tight.sign_in().call("do-eval", "spin")
    assert answer.status_code == 500
    assert "CPU time limit of 1 s" in answer.json()["errorMessage"]
    assert still_serves(tight)


def test_an_expired_token_gets_401_and_can_no_longer_be_refreshed(tight):
    time.sleep(2.5)
    expired = tight.call("do-eval", "return_df", {"parameters": '{"num": 1, "scale": 1}'})
    assert expired.status_code == 401
    assert "expired" in expired.json()["errorMessage"]
    assert tight.grant({"grant_type": "refresh_token", "refresh_token": tight.access_token}).status_code == 401


def test_an_injected_503_on_a_post_creates_no_job(transactional_db, unavailable_stack):
    call_command("omlengine_seed", verbosity=0)
    engine = EngineClient(unavailable_stack.base_url).sign_in()
    answer = engine.call("do-eval", "timer", {"asyncFlag": True, "parameters": '{"seconds": 1}'})
    assert answer.status_code == 503
    assert "errorMessage" in answer.json()
    assert not EngineJob.objects.exists()
    assert not EngineCall.objects.exists()
