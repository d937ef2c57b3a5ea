"""Notifications in the running system: the worker delivers what a job's end wrote, a worker SIGKILLed in the
middle of a delivery loses none, `slow` fires for a run longer than its history and not for a normal one
(timer scripts of the embedded engine), and the bell in Chromium. The stack's NOTIFY_* waits are short
(pyproject.toml)."""

from __future__ import annotations

import signal

import pytest
from django.utils import timezone

from jobs.models import Connection
from jobs.selectors.stats import script_stats_record
from jobs.services.jobs import job_create
from jobs.services.specs import parse_job_request
from jobs.states import JobState
from notifications.models import Notification
from tests.notifications_support import make_rule
from tests.stack import wait_for
from tests.support.receivers import WebhookReceiver

S = Notification.State


def submit(owner, **request):
    return job_create(owner=owner, spec=parse_job_request(request, user=owner))


@pytest.fixture
def receiver():
    hook = WebhookReceiver().start()
    yield hook
    hook.stop()


def test_the_worker_delivers_a_finished_jobs_notification_once_signed(live, analyst, receiver):
    rule, secret = make_rule(analyst, channel="webhook", target=receiver.url, events=["succeeded"])
    receiver.secret = secret
    job = submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 0.2})
    wait_for(lambda: receiver.received, timeout=60, what="the webhook")
    wait_for(lambda: rule.notifications.filter(state=S.DELIVERED).exists(), timeout=30, what="delivered")
    [got] = receiver.received
    assert got.signature_ok
    assert got.body["job"]["uuid"] == str(job.uuid)
    assert got.body["job"]["state"] == JobState.SUCCEEDED
    assert got.key == str(rule.notifications.get().key)


def test_a_worker_killed_in_the_middle_of_a_delivery_loses_nothing(live, analyst, receiver):
    receiver.mode = "hold"
    rule, secret = make_rule(analyst, channel="webhook", target=receiver.url, events=["succeeded"])
    receiver.secret = secret
    submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 0.1})
    assert receiver.arrived.wait(60), "no delivery started"
    live.kill("worker", signal.SIGKILL)  # while the receiver holds the request open
    receiver.mode = "ok"
    receiver.release.set()
    live.start_worker()
    notification = wait_for(
        lambda: rule.notifications.filter(state=S.DELIVERED).first(), timeout=60, what="delivery after the kill"
    )
    # The same key each time: the receiver may have seen the interrupted attempt, and drops the repeat by it.
    assert set(receiver.keys()) == {str(notification.key)}
    assert notification.attempts >= 2
    assert all(item.signature_ok for item in receiver.received)


def test_slow_fires_for_a_run_longer_than_its_history_and_not_for_a_normal_one(live, analyst):
    connection = Connection.objects.get(is_default=True)
    for _ in range(5):
        script_stats_record(
            connection_id=connection.pk, script_name="timer", script_owner="", seconds=1.0, at=timezone.now()
        )
    rule, _ = make_rule(analyst, events=["slow"], factor=3)
    normal = submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 1})
    long_run = submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 8})
    slow = wait_for(lambda: rule.notifications.first(), timeout=30, what="the slow notification")
    assert slow.job_uuid == long_run.uuid
    assert "this script usually finishes within 1 s on this connection" in slow.message
    wait_for(lambda: normal.__class__.objects.get(pk=normal.pk).state == JobState.SUCCEEDED, timeout=30, what="done")
    assert not rule.notifications.filter(job_uuid=normal.uuid).exists()


@pytest.mark.browser
def test_the_bell_shows_unread_notifications_and_the_list_marks_them_read(live, analyst, page, login):
    make_rule(analyst, channel="inapp", events=["succeeded", "failed"])
    jobs = [submit(analyst, kind="do_eval", script="timer", parameters={"seconds": 0.1}) for _ in range(2)]
    wait_for(lambda: Notification.objects.filter(recipient=analyst).count() == 2, timeout=60, what="notifications")
    login(page, "analyst")
    assert page.inner_text("#bell-count") == "2"
    page.click("#bell")
    page.wait_for_url("**/account/notifications/")
    assert page.locator("#inbox li.unread").count() == 2
    assert str(jobs[0].uuid) in page.inner_text("#inbox")
    page.click("#mark-all-read")
    page.wait_for_load_state("networkidle")
    assert page.locator("#inbox li.unread").count() == 0
    assert page.locator("#bell-count").count() == 0
