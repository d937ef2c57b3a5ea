"""Who may make which rule, what a rule fires for, the API at /api/v1/notification-rules, the refusal of
targets inside the network, the audit of rule changes, and the in-app list."""

from __future__ import annotations

import pytest

from accounts.models import Membership, Team
from accounts.tokens import token_create
from audit.models import AuditEntry
from jobs.states import JobKind, JobState
from notifications import targets
from notifications.models import Notification, NotificationRule
from notifications.services import TargetForbidden
from tests.notifications_support import make_rule, run_job

pytestmark = pytest.mark.django_db
API = "/api/v1/notification-rules"


@pytest.fixture
def world(make_user, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    risk, other = Team.objects.create(name="Risk"), Team.objects.create(name="Other")
    users = {name: make_user(name) for name in ("ana", "bob", "lead", "auditor", "other_lead")}
    Membership.objects.create(user=users["ana"], team=risk, role="analyst")
    Membership.objects.create(user=users["bob"], team=risk, role="analyst")
    Membership.objects.create(user=users["lead"], team=risk, role="lead")
    Membership.objects.create(user=users["auditor"], team=risk, role="auditor")
    Membership.objects.create(user=users["other_lead"], team=other, role="lead")
    return {"risk": risk, "other": other, **users}


def api(client, user, method: str, path: str = API, body=None):
    token = token_create(user=user, name="t")[1]
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    if method in ("post", "put"):
        return getattr(client, method)(path, body or {}, content_type="application/json", **headers)
    return getattr(client, method)(path, **headers)


def test_a_team_leads_rule_fires_for_a_teammates_job_and_another_teams_lead_hears_nothing(world):
    team_rule, _ = make_rule(world["lead"], scope="team", team=world["risk"].pk, events=["failed"])
    make_rule(world["other_lead"], scope="team", team=world["other"].pk, events=["failed"])
    own_rule, _ = make_rule(world["ana"], events=["failed", "succeeded"])
    make_rule(world["bob"], events=["failed"])

    job = run_job(world["ana"], team=world["risk"])

    fired = set(Notification.objects.filter(job_uuid=job.uuid).values_list("rule_id", flat=True))
    assert fired == {team_rule.pk, own_rule.pk}
    # Demoted leads' team rules go quiet.
    Membership.objects.filter(user=world["lead"]).update(role="analyst")
    second = run_job(world["ana"], team=world["risk"])
    assert set(Notification.objects.filter(job_uuid=second.uuid).values_list("rule_id", flat=True)) == {own_rule.pk}


def test_filters_events_script_kind_and_connection_narrow_what_a_rule_fires_for(world):
    rule, _ = make_rule(world["ana"], events=["failed"], script="nightly", kind=JobKind.DO_EVAL)
    run_job(world["ana"], script="other")  # another script
    run_job(world["ana"], script="nightly", kind=JobKind.INDEX_APPLY)  # another kind
    run_job(world["ana"], script="nightly", to_state=JobState.SUCCEEDED)  # another event
    run_job(world["ana"], script="nightly", to_state=JobState.PENDING)  # no event at all yet
    assert not rule.notifications.exists()
    job = run_job(world["ana"], script="nightly")
    assert list(rule.notifications.values_list("job_uuid", flat=True)) == [job.uuid]


def test_an_in_app_notification_counts_on_the_bell_until_marked_read(client, world):
    make_rule(world["ana"], channel="inapp", events=["failed"])
    run_job(world["ana"])
    run_job(world["ana"])
    client.force_login(world["ana"])
    page = client.get("/jobs/")
    assert 'id="bell-count">2<' in page.content.decode()
    inbox = client.get("/account/notifications/").content.decode()
    assert inbox.count('class="unread"') == 2
    first = Notification.objects.order_by("pk").first()
    client.post("/account/notifications/read/", {"id": first.pk})
    assert 'id="bell-count">1<' in client.get("/jobs/").content.decode()
    client.post("/account/notifications/read/")
    assert 'id="bell-count"' not in client.get("/jobs/").content.decode()
    # Someone else's bell is their own.
    client.force_login(world["bob"])
    assert 'id="bell-count"' not in client.get("/jobs/").content.decode()


def test_the_api_creates_a_webhook_rule_returning_its_secret_once_and_never_the_target(client, world):
    body = {"events": ["failed", "slow"], "channel": "webhook", "target": "https://hooks.example.com/T0/secret-path"}
    created = api(client, world["ana"], "post", body=body)
    assert created.status_code == 201, created.content
    data = created.json()
    assert len(data["secret"]) >= 32
    assert data["target_hint"] == "https://hooks.example.com/..."
    assert data["scope"] == "mine"
    assert data["factor"] == 1.5
    rule = NotificationRule.objects.get(pk=data["id"])
    assert rule.secret == data["secret"]
    assert rule.target == body["target"]
    assert "secret-path" not in rule.target_encrypted
    assert data["secret"] not in rule.secret_encrypted
    read = api(client, world["ana"], "get", f"{API}/{rule.pk}").json()
    assert "secret" not in read
    assert "secret-path" not in str(read)
    assert [item["id"] for item in api(client, world["ana"], "get").json()] == [rule.pk]
    entry = AuditEntry.objects.get(action="rule_create")
    assert entry.target_id == str(rule.pk)
    assert "secret-path" not in str(entry.details)


def test_the_api_replaces_and_deletes_rules_and_every_change_is_audited(client, world):
    rule_id = api(client, world["ana"], "post", body={"events": ["failed"], "channel": "inapp"}).json()["id"]
    changed = api(
        client,
        world["ana"],
        "put",
        f"{API}/{rule_id}",
        {"events": ["succeeded"], "channel": "email", "target": "me@example.com", "enabled": False},
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["events"] == ["succeeded"]
    assert changed.json()["enabled"] is False
    assert api(client, world["bob"], "delete", f"{API}/{rule_id}").status_code == 404
    assert api(client, world["ana"], "delete", f"{API}/{rule_id}").status_code == 204
    assert not NotificationRule.objects.exists()
    assert list(AuditEntry.objects.filter(target_type="rule").order_by("id").values_list("action", flat=True)) == [
        "rule_create",
        "rule_update",
        "rule_delete",
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": [], "channel": "inapp"}, "events"),
        ({"events": ["exploded"], "channel": "inapp"}, "events"),
        ({"events": ["failed"], "channel": "email", "target": "not an address"}, "target"),
        ({"events": ["failed"], "channel": "webhook", "target": "ftp://example.com/x"}, "target"),
        ({"events": ["failed"], "channel": "apprise", "target": "json://example.com/x"}, "target"),
        ({"events": ["failed"], "channel": "inapp", "factor": 0.5}, "factor"),
        ({"events": ["failed"], "channel": "inapp", "minutes": 0}, "minutes"),
        ({"events": ["failed"], "channel": "inapp", "colour": "red"}, "colour"),
    ],
)
def test_a_bad_rule_is_refused_with_the_field_named_and_nothing_is_stored(client, world, body, field):
    answer = api(client, world["ana"], "post", body=body)
    assert answer.status_code == 400
    assert field in answer.json()["errors"]
    assert not NotificationRule.objects.exists()
    assert not AuditEntry.objects.filter(action="rule_create").exists()


def test_analysts_cannot_make_team_rules_nor_leads_for_another_team_and_auditors_change_nothing(client, world):
    team_rule = {"events": ["failed"], "channel": "inapp", "scope": "team"}
    assert api(client, world["ana"], "post", body=team_rule).status_code == 403
    assert api(client, world["lead"], "post", body={**team_rule, "team": world["other"].pk}).status_code == 403
    made = api(client, world["lead"], "post", body=team_rule)
    assert made.status_code == 201
    assert made.json()["team"] == world["risk"].pk
    rule_id = made.json()["id"]
    # The auditor sees the team's rule and its deliveries, and changes nothing.
    assert api(client, world["auditor"], "post", body={"events": ["failed"], "channel": "inapp"}).status_code == 403
    assert [item["id"] for item in api(client, world["auditor"], "get").json()] == [rule_id]
    assert api(client, world["auditor"], "put", f"{API}/{rule_id}", team_rule).status_code == 403
    assert api(client, world["auditor"], "delete", f"{API}/{rule_id}").status_code == 403
    client.force_login(world["auditor"])
    assert client.get(f"/account/notification-rules/{rule_id}/").status_code == 200
    assert client.post(f"/account/notification-rules/{rule_id}/delete/").status_code == 403
    assert client.get("/account/notification-rules/new/").status_code == 403
    # Analysts neither see nor touch it.
    assert api(client, world["bob"], "get", f"{API}/{rule_id}").status_code == 404
    assert NotificationRule.objects.filter(pk=rule_id).exists()


def test_a_rule_about_a_connection_the_user_cannot_see_answers_404(client, world):
    from jobs.services.jobs import connection_save

    hidden = connection_save(name="Hidden", base_url="http://127.0.0.1:9", username="u", password="p", teams=[])
    body = {"events": ["failed"], "channel": "inapp", "connection": hidden.pk}
    assert api(client, world["ana"], "post", body=body).status_code == 404
    assert not NotificationRule.objects.exists()


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "10.1.2.3", "192.168.0.10", "172.16.5.4", "169.254.169.254", "0.0.0.0", "100.64.0.1"],  # noqa: S104
)
def test_webhook_targets_inside_the_network_are_refused_at_save(client, world, settings, host):
    settings.NOTIFY_ALLOW_PRIVATE_TARGETS = False
    body = {"events": ["failed"], "channel": "webhook", "target": f"http://{host}:8080/hook"}
    answer = api(client, world["ana"], "post", body=body)
    assert answer.status_code == 403
    assert "inside the network" in answer.json()["detail"]
    assert not NotificationRule.objects.exists()


@pytest.mark.parametrize("address", ["::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "fe80::1", "fc00::1"])
def test_ipv6_loopback_mapped_link_local_and_private_addresses_are_refused(settings, address):
    settings.NOTIFY_ALLOW_PRIVATE_TARGETS = False
    with pytest.raises(targets.TargetRefused, match="inside the network"):
        targets.resolve(address, 443)


def test_a_target_that_became_private_is_refused_again_at_delivery_and_nothing_is_sent(world, settings):
    from notifications.delivery import notification_deliver
    from tests.support.receivers import WebhookReceiver

    receiver = WebhookReceiver().start()
    try:
        make_rule(world["ana"], channel="webhook", target=receiver.url)  # allowed while it was saved
        run_job(world["ana"])
        settings.NOTIFY_ALLOW_PRIVATE_TARGETS = False
        notification = Notification.objects.get()
        assert notification_deliver(notification_id=notification.pk) == "retry"
    finally:
        receiver.stop()
    assert receiver.hits == 0
    notification.refresh_from_db()
    assert "inside the network" in notification.last_error


def test_apprise_schemes_outside_the_allowed_list_are_refused_and_self_hosted_hosts_are_checked(world, settings):
    settings.NOTIFY_ALLOW_PRIVATE_TARGETS = False
    with pytest.raises(Exception, match="allowed service"):
        make_rule(world["ana"], channel="apprise", target="json://example.com/")
    with pytest.raises(TargetForbidden, match="inside the network"):
        make_rule(world["ana"], channel="apprise", target="ntfy://127.0.0.1/topic")
    rule, _ = make_rule(world["ana"], channel="apprise", target="msteams://TokenA/TokenB/TokenC/")
    assert rule.target == "msteams://TokenA/TokenB/TokenC/"


def test_the_rule_pages_create_edit_show_deliveries_and_delete(client, world):
    client.force_login(world["ana"])
    form = {
        "name": "Nightly failures",
        "events": ["failed"],
        "channel": "inapp",
        "format": "json",
        "scope": "mine",
        "factor": "1.5",
        "minutes": "60",
        "stuck_minutes": "15",
        "enabled": "on",
    }
    created = client.post("/account/notification-rules/new/", form)
    rule = NotificationRule.objects.get()
    assert created.status_code == 302
    assert created["Location"].endswith(f"/{rule.pk}/")
    run_job(world["ana"])
    page = client.get(f"/account/notification-rules/{rule.pk}/").content.decode()
    assert "Nightly failures" in page
    assert "Delivered" in page
    assert "Failed" in page
    bad = client.post(f"/account/notification-rules/{rule.pk}/edit/", {**form, "channel": "email", "target": "x"})
    assert bad.status_code == 200
    assert "Enter one email address" in bad.content.decode()
    rule.refresh_from_db()
    assert rule.channel == "inapp"
    assert client.post(f"/account/notification-rules/{rule.pk}/delete/").status_code == 302
    assert not NotificationRule.objects.exists()


def test_the_job_page_lists_the_jobs_deliveries(client, world):
    make_rule(world["ana"], channel="inapp", events=["failed"])
    job = run_job(world["ana"])
    client.force_login(world["ana"])
    page = client.get(f"/jobs/{job.uuid}/").content.decode()
    assert 'id="job-notifications"' in page
    assert "In the app" in page


def test_a_lead_pins_their_teams_jobs_and_sees_only_their_teams_storage(client, world):
    from jobs.selectors import access
    from tests.results_support import make_job

    risk_job = make_job(world["ana"], team=world["risk"])
    other_job = make_job(world["other_lead"], team=world["other"])
    assert access.can_pin(world["lead"], risk_job)
    assert not access.can_pin(world["lead"], other_job)
    assert not access.can_pin(world["bob"], risk_job)
    client.force_login(world["lead"])
    page = client.get("/storage/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Risk" in text
    assert "Other" not in text
    client.force_login(world["ana"])
    assert client.get("/storage/").status_code == 403
