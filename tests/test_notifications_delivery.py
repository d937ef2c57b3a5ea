"""Delivering notifications to real receivers on loopback: a webhook server that checks signatures and
idempotency keys, goes down, answers 500 and recovers; a real SMTP server. Attempts run in the test's process
through notifications.delivery, the code the workers run; waiting times come from settings."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from jobs.states import JobState
from notifications.delivery import digests_send, notification_deliver
from notifications.models import Notification
from tests.notifications_support import make_rule, run_job
from tests.support.receivers import MailReceiver, WebhookReceiver

pytestmark = pytest.mark.django_db
S = Notification.State


@pytest.fixture
def quick_retries(settings):
    settings.NOTIFY_RETRY_BASE_SECONDS = 0.05
    settings.NOTIFY_RETRY_MAX_SECONDS = 0.2
    settings.NOTIFY_MAX_ATTEMPTS = 10
    settings.NOTIFY_TIMEOUT_SECONDS = 2
    return settings


@pytest.fixture
def smtp_backend(settings):
    """Django's SMTP backend, which production uses (the test runner swaps in an in-memory one)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    return settings


@pytest.fixture
def receiver():
    hook = WebhookReceiver()
    hook.start()
    yield hook
    hook.stop()


def deliver_until_settled(rounds: int = 40) -> None:
    """What the workers do: attempt every due delivery, again and again, until none is pending."""
    for _ in range(rounds):
        pending = list(Notification.objects.filter(state=S.PENDING).values_list("pk", flat=True))
        if not pending:
            return
        for pk in pending:
            notification_deliver(notification_id=pk)
        time.sleep(0.06)


def test_a_failed_job_is_posted_once_signed_with_the_rules_secret_and_a_stable_key(analyst, receiver, quick_retries):
    rule, secret = make_rule(analyst, channel="webhook", target=receiver.url, events=["failed", "succeeded"])
    receiver.secret = secret
    assert secret
    job = run_job(analyst, script="score")
    notification = Notification.objects.get(rule=rule)
    assert notification.state == S.PENDING

    assert notification_deliver(notification_id=notification.pk) == "delivered"

    [got] = receiver.received
    assert got.signature_ok
    assert abs(got.signed_at - time.time()) < 300
    assert got.key == str(notification.key) == got.body["id"]
    assert got.body["event"] == "failed"
    job_object = got.body["job"]
    assert job_object["uuid"] == str(job.uuid)
    assert job_object["state"] == "failed"
    assert job_object["script"] == "score"
    assert job_object["owner"] == "analyst"
    assert job_object["error"] == "ORA-20000: boom"
    assert job_object["url"].endswith(f"/jobs/{job.uuid}/")
    assert {"kind", "connection", "created_at", "finished_at"} <= set(job_object)
    notification.refresh_from_db()
    assert (notification.state, notification.attempts, notification.last_error) == (S.DELIVERED, 1, "")
    # A repeated message for a delivered notification sends nothing.
    assert notification_deliver(notification_id=notification.pk) is None
    assert len(receiver.received) == 1


def test_a_receiver_that_goes_down_answers_500_then_recovers_gets_every_notification_exactly_once(
    analyst, receiver, quick_retries
):
    rule, secret = make_rule(analyst, channel="webhook", target=receiver.url, events=["failed", "succeeded"])
    receiver.secret = secret
    receiver.stop()  # down: connections refused
    jobs = [run_job(analyst, to_state=JobState.FAILED if i % 2 else JobState.SUCCEEDED) for i in range(6)]
    for pk in Notification.objects.values_list("pk", flat=True):
        assert notification_deliver(notification_id=pk) == "retry"
    assert set(Notification.objects.values_list("last_error", flat=True)) == {
        "Cannot reach the receiver: ConnectionError."
    }

    receiver.mode = "500"
    receiver.start()
    time.sleep(0.1)
    for pk in Notification.objects.values_list("pk", flat=True):
        assert notification_deliver(notification_id=pk) == "retry"
    assert receiver.hits == 6
    assert set(Notification.objects.values_list("last_error", flat=True)) == {"The receiver answered HTTP 500."}

    receiver.mode = "ok"
    deliver_until_settled()

    keys = {str(key) for key in Notification.objects.values_list("key", flat=True)}
    assert sorted(receiver.keys()) == sorted(keys)  # each key once, none missing
    assert all(item.signature_ok for item in receiver.received)
    assert {item.body["job"]["uuid"] for item in receiver.received} == {str(job.uuid) for job in jobs}
    rows = list(Notification.objects.values_list("state", "attempts", "last_error"))
    assert all(state == S.DELIVERED and attempts >= 3 and error == "" for state, attempts, error in rows)
    assert rule.notifications.count() == 6


def test_backoff_doubles_from_the_base_and_a_delivery_is_given_up_after_the_most_attempts(analyst, settings):
    settings.NOTIFY_RETRY_BASE_SECONDS = 0.2
    settings.NOTIFY_RETRY_MAX_SECONDS = 100
    settings.NOTIFY_MAX_ATTEMPTS = 3
    dead = WebhookReceiver()  # never started: refused
    make_rule(analyst, channel="webhook", target=dead.url)
    run_job(analyst)
    notification = Notification.objects.get()

    before = timezone.now()
    assert notification_deliver(notification_id=notification.pk) == "retry"
    notification.refresh_from_db()
    assert 0.15 <= (notification.next_attempt_at - before).total_seconds() <= 0.5
    # Not due yet: nothing is sent.
    assert notification_deliver(notification_id=notification.pk) is None
    time.sleep(0.25)
    assert notification_deliver(notification_id=notification.pk) == "retry"
    notification.refresh_from_db()
    assert notification.attempts == 2
    wait = (notification.next_attempt_at - timezone.now()).total_seconds()
    assert 0.25 <= wait <= 0.45  # base x 2
    time.sleep(wait + 0.05)
    assert notification_deliver(notification_id=notification.pk) == "failed"
    notification.refresh_from_db()
    assert (notification.state, notification.attempts, notification.next_attempt_at) == (S.FAILED, 3, None)
    assert "Cannot reach the receiver" in notification.last_error


def test_a_receiver_that_redirects_is_not_followed(analyst, receiver, quick_retries):
    receiver.mode = "redirect"
    make_rule(analyst, channel="webhook", target=receiver.url)
    run_job(analyst)
    notification = Notification.objects.get()
    assert notification_deliver(notification_id=notification.pk) == "retry"
    assert receiver.hits == 1  # the redirect's target was never asked
    notification.refresh_from_db()
    assert notification.last_error == "The receiver answered HTTP 302."


def test_a_slack_format_rule_posts_a_slack_compatible_body(analyst, receiver, quick_retries):
    _rule, secret = make_rule(analyst, channel="webhook", target=receiver.url, format="slack")
    receiver.secret = secret
    job = run_job(analyst, script="nightly")
    notification_deliver(notification_id=Notification.objects.get().pk)
    [got] = receiver.received
    assert set(got.body) == {"text"}
    assert "nightly" in got.body["text"]
    assert str(job.uuid) in got.body["text"]
    assert got.signature_ok
    assert got.key


def test_an_email_reaches_a_real_smtp_server_in_text_and_html_with_the_key_as_message_id(analyst, smtp_backend):
    settings = smtp_backend
    mail = MailReceiver().start()
    try:
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", mail.port
        make_rule(analyst, channel="email", target="ops@example.com", events=["failed"])
        job = run_job(analyst, script="score", error="division by zero")
        notification = Notification.objects.get()
        assert notification_deliver(notification_id=notification.pk) == "delivered"
        [message] = mail.wait(1)
    finally:
        mail.stop()
    assert message["To"] == "ops@example.com"
    assert message["Message-ID"] == f"<{notification.key}@omlpy.notifications>"
    assert "score" in message["Subject"]
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    for body in (text, html):
        assert str(job.uuid) in body
        assert "division by zero" in body
        assert f"/jobs/{job.uuid}/" in body
    assert "analyst" in text
    assert "failed" in text


def test_an_unreachable_mail_server_is_recorded_and_retried(analyst, smtp_backend, quick_retries):
    settings = smtp_backend
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", WebhookReceiver().port  # nothing listens there
    make_rule(analyst, channel="email", target="ops@example.com")
    run_job(analyst)
    notification = Notification.objects.get()
    assert notification_deliver(notification_id=notification.pk) == "retry"
    notification.refresh_from_db()
    assert notification.state == S.PENDING
    assert "mail server" in notification.last_error


def test_a_rule_that_fires_too_often_switches_to_one_digest_per_window(analyst, receiver, settings, quick_retries):
    settings.NOTIFY_DIGEST_AFTER = 2
    settings.NOTIFY_DIGEST_WINDOW = 0.3
    rule, secret = make_rule(analyst, channel="webhook", target=receiver.url)
    receiver.secret = secret
    jobs = [run_job(analyst) for _ in range(5)]
    states = list(Notification.objects.order_by("created_at", "pk").values_list("state", flat=True))
    assert states == [S.PENDING, S.PENDING, S.HELD, S.HELD, S.HELD]
    assert digests_send() == 0  # the window has not passed
    time.sleep(0.35)
    assert digests_send() == 1
    assert digests_send() == 0
    digest = Notification.objects.get(event="digest")
    assert Notification.objects.filter(state=S.DIGESTED, digest=digest).count() == 3
    deliver_until_settled()
    bodies = {item.body["event"]: item.body for item in receiver.received}
    assert len(receiver.received) == 3
    assert {entry["job"]["uuid"] for entry in bodies["digest"]["notifications"]} == {str(j.uuid) for j in jobs[2:]}
    assert rule.notifications.filter(state=S.DELIVERED).count() == 3
