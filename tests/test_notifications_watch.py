"""What the sweep sees: `slow` against the script's learned p95 (or the rule's minutes), `stuck` when OML does
not answer a job's polls, `connection_down` once per connection and episode with its recovery; and the
retention and key rotation of notifications."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from jobs.models import Job
from jobs.services.retention import purge
from jobs.states import JobState
from notifications.models import ConnectionEpisode, Notification, NotificationRule
from notifications.watch import notifications_watch
from tests.notifications_support import make_rule, run_job

pytestmark = pytest.mark.django_db


def running_for(job: Job, seconds: float, **fields) -> Job:
    started = timezone.now() - timedelta(seconds=seconds)
    Job.objects.filter(pk=job.pk).update(oml_accepted_at=started, last_polled_at=timezone.now(), **fields)
    job.refresh_from_db()
    return job


def test_slow_fires_once_for_a_run_longer_than_its_history_and_not_for_a_normal_one(analyst):
    rule, _ = make_rule(analyst, events=["slow"], factor=1.5)
    # History: this script usually takes 60 s (p95 about 62 s with this spread); the rule allows 1.5x that.
    long_run = running_for(run_job(analyst, to_state=JobState.PENDING), 100, expected_seconds=60, expected_spread=0.02)
    normal = running_for(run_job(analyst, to_state=JobState.PENDING), 70, expected_seconds=60, expected_spread=0.02)

    notifications_watch(force=True)
    notifications_watch(force=True)  # once per job and rule

    [slow] = Notification.objects.filter(rule=rule)
    assert (slow.event, slow.job_uuid) == ("slow", long_run.uuid)
    assert "running 100 s" in slow.message
    assert "this script usually finishes within 62 s on this connection" in slow.message
    assert slow.payload["expected_p95_seconds"] == pytest.approx(62.0, abs=0.5)
    assert not Notification.objects.filter(job_uuid=normal.uuid).exists()


def test_slow_without_history_uses_the_rules_minutes(analyst):
    rule, _ = make_rule(analyst, events=["slow"], minutes=2)
    late = running_for(run_job(analyst, to_state=JobState.PENDING), 150)
    running_for(run_job(analyst, to_state=JobState.PENDING), 60)
    notifications_watch(force=True)
    [slow] = rule.notifications.all()
    assert slow.job_uuid == late.uuid
    assert "no history yet; the rule's limit is 2 min" in slow.message


def test_stuck_fires_when_polls_have_failed_for_the_rules_minutes(analyst):
    rule, _ = make_rule(analyst, events=["stuck"], stuck_minutes=1)
    job = running_for(run_job(analyst, to_state=JobState.PENDING), 10, last_error="Cannot reach OML: ConnectTimeout")
    start = timezone.now()
    notifications_watch(start, force=True)  # first seen failing
    notifications_watch(start + timedelta(seconds=30), force=True)
    assert not rule.notifications.exists()
    notifications_watch(start + timedelta(seconds=61), force=True)
    notifications_watch(start + timedelta(seconds=90), force=True)
    [stuck] = rule.notifications.all()
    assert stuck.job_uuid == job.uuid
    assert stuck.event == "stuck"
    assert "ConnectTimeout" in stuck.message


def test_a_connection_down_is_one_notification_per_episode_and_its_recovery_another(analyst, settings):
    from tests.conftest import analysts_team
    from tests.results_support import default_connection

    settings.NOTIFY_CONNECTION_DOWN_AFTER = 60
    # Told only about connections the rule's owner may see: this one is granted to the analyst's team.
    default_connection().teams.add(analysts_team())
    rule, _ = make_rule(analyst, events=["connection_down"])
    jobs = [
        running_for(run_job(analyst, to_state=JobState.PENDING), 5, last_error="Authentication failed")
        for _ in range(3)
    ]
    start = timezone.now()
    notifications_watch(start, force=True)
    notifications_watch(start + timedelta(seconds=30), force=True)
    assert not rule.notifications.exists()
    for later in (61, 90, 120):
        notifications_watch(start + timedelta(seconds=later), force=True)
    [down] = rule.notifications.all()
    assert down.event == "connection_down"
    assert "down" in down.subject
    assert down.job_uuid is None

    Job.objects.filter(pk__in=[job.pk for job in jobs]).update(last_error="")
    notifications_watch(start + timedelta(seconds=130), force=True)
    notifications_watch(start + timedelta(seconds=140), force=True)
    subjects = list(rule.notifications.order_by("created_at").values_list("subject", flat=True))
    assert len(subjects) == 2
    assert "recovered" in subjects[1]
    assert ConnectionEpisode.objects.get().ended_at is not None

    # A new episode is a new notification.
    Job.objects.filter(pk__in=[job.pk for job in jobs]).update(last_error="Cannot reach OML")
    notifications_watch(start + timedelta(seconds=200), force=True)
    notifications_watch(start + timedelta(seconds=300), force=True)
    assert rule.notifications.count() == 3
    assert ConnectionEpisode.objects.count() == 2


def test_the_purge_removes_old_delivered_notifications_in_batches_and_keeps_undelivered_ones(analyst, settings):
    settings.NOTIFY_KEEP_DAYS = 30
    settings.RETENTION_PURGE_BATCH = 2
    settings.RETENTION_PURGE_PAUSE = 0
    make_rule(analyst, channel="inapp", events=["failed"])
    for _ in range(5):
        run_job(analyst)
    make_rule(analyst, channel="webhook", target="http://127.0.0.1:9/hook", events=["failed"])
    run_job(analyst)
    old = timezone.now() - timedelta(days=31)
    Notification.objects.update(created_at=old)
    recent = Notification.objects.filter(channel="inapp").order_by("pk").first()
    Notification.objects.filter(pk=recent.pk).update(created_at=timezone.now())

    purge()

    left = list(Notification.objects.values_list("channel", "state"))
    assert sorted(left) == [("inapp", "delivered"), ("webhook", "pending")]
    purge()
    assert Notification.objects.count() == 2


def test_key_rotation_re_encrypts_rule_targets_and_secrets(analyst, settings):
    from cryptography.fernet import Fernet

    rule, secret = make_rule(analyst, channel="webhook", target="https://hooks.example.com/x", events=["failed"])
    old_target, old_secret = rule.target_encrypted, rule.secret_encrypted
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *settings.ENCRYPTION_KEYS]
    call_command("rotate_encryption_keys")
    rule = NotificationRule.objects.get(pk=rule.pk)
    assert rule.target_encrypted != old_target
    assert rule.secret_encrypted != old_secret
    settings.ENCRYPTION_KEYS = settings.ENCRYPTION_KEYS[:1]  # the old key removed
    assert rule.target == "https://hooks.example.com/x"
    assert rule.secret == secret
