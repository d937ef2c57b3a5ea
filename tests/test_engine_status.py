"""The embedded engine's status answer over real HTTP, against the running stack: 202 while running, 302 once
finished, every request counted exactly once, other users' and deleted jobs unknown, and a token the server
has already accepted refused once it expires."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from omlengine import auth
from omlengine.models import EngineJob
from omlengine.services import user_ensure
from tests.test_engine_protocol import EngineClient

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def engine(live) -> EngineClient:
    return EngineClient(live.base_url).sign_in()


def timer_job(engine: EngineClient, seconds: float) -> str:
    return engine.submit("do-eval", "timer", {"asyncFlag": True, "parameters": f'{{"seconds": {seconds}}}'})


def test_a_running_job_answers_202_with_its_age_and_each_status_request_is_counted_once(engine):
    job_url = timer_job(engine, 3600)
    answers = [engine.get(job_url) for _ in range(5)]
    assert [answer.status_code for answer in answers] == [202] * 5
    body = answers[-1].json()
    assert body["status"] == "job is still running"
    assert body["elapsedTime"].count(":") == 2
    job = EngineJob.objects.get()
    assert body["createdDate"] == job.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert job.status_requests == 5
    assert job.state == EngineJob.State.RUNNING


def test_a_due_timer_job_answers_302_to_its_result_and_finishes_at_its_due_time(engine):
    job_url = timer_job(engine, 3600)
    assert engine.get(job_url).status_code == 202
    # The job is made due an hour early rather than waited for.
    due = timezone.now() - timedelta(seconds=1)
    EngineJob.objects.update(due_at=due)
    answers = [engine.get(job_url) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [302] * 3
    assert answers[0].headers["Content-Location"] == f"{job_url}/result"
    job = EngineJob.objects.get()
    assert (job.state, job.finished_at, job.status_requests) == (EngineJob.State.SUCCEEDED, due, 4)
    assert engine.get(f"{job_url}/result").json() == {"result": {"slept": 3600.0}}


def test_another_users_job_and_a_deleted_job_are_unknown_and_not_counted(engine, live):
    job_url = timer_job(engine, 3600)
    user_ensure(username="OTHER", password="other-password")
    other = EngineClient(live.base_url).sign_in("OTHER", "other-password")
    refused = other.get(job_url)
    assert refused.status_code == 500
    assert refused.json()["errorMessage"].startswith("job not found")
    assert EngineJob.objects.get().status_requests == 0
    assert engine.delete(job_url).status_code == 200
    assert engine.get(job_url).status_code == 500
    assert EngineJob.objects.get().status_requests == 0


def test_a_token_the_server_accepted_before_is_refused_once_it_expires(engine):
    job_url = timer_job(engine, 3600)
    # A token of the demo user, signed as the engine signs them, that expires at the next whole second.
    now = time.time()
    expires = int(now + 0.5) + 1  # between half a second and a second and a half from now
    claims = {"sub": "OMLUSER", "iat": int(now), "exp": expires, "orig_iat": int(now), "jti": "short-lived"}
    engine.access_token = auth._encode(claims)
    accepted = engine.get(job_url)
    assert accepted.status_code == 202, accepted.text
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    expired = engine.get(job_url)
    assert expired.status_code == 401
    assert "expired" in expired.json()["errorMessage"]
    assert EngineJob.objects.get().status_requests == 1
