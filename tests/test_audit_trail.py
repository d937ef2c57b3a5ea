"""What goes into the audit trail, who may read it, and the page and its CSV export showing the same rows."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Membership, Team
from audit.models import AuditEntry
from audit.services import audit_record


@pytest.fixture
def people(make_user):
    team, other = Team.objects.create(name="Risk"), Team.objects.create(name="Pricing")
    users = {name: make_user(name) for name in ("ana", "ben", "olga", "aud", "root")}
    Membership.objects.create(user=users["ana"], team=team, role="analyst")
    Membership.objects.create(user=users["ben"], team=team, role="analyst")
    Membership.objects.create(user=users["olga"], team=other, role="analyst")
    Membership.objects.create(user=users["aud"], team=team, role="auditor")
    users["root"].is_staff = users["root"].is_superuser = True
    users["root"].save()
    return users


def _rows(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'data-entry-id="(\d+)"', html)]


def _page_ids(client, params: dict) -> list[int]:
    """Every entry the page lists for these filters, following its "older entries" links."""
    ids, url, query = [], "/audit/", dict(params)
    while True:
        response = client.get(url, query)
        assert response.status_code == 200
        html = response.content.decode()
        ids += _rows(html)
        found = re.search(r'href="\?([^"]*after=[^"]+)" rel="next"', html)
        if not found:
            return ids
        url, query = "/audit/?" + found.group(1).replace("&amp;", "&"), {}


def _export_ids(client, params: dict) -> list[int]:
    response = client.get("/audit/export.csv", params)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    return [int(row["id"]) for row in rows]


def test_analysts_are_refused_the_audit_page_and_its_export(client, people):
    client.force_login(people["ana"])
    assert client.get("/audit/").status_code == 403
    assert client.get("/audit/export.csv").status_code == 403


def test_anonymous_visitors_are_sent_to_sign_in(client):
    response = client.get("/audit/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_an_auditor_reads_the_entries_of_their_teams_members_only(client, people):
    for name in ("ana", "ben", "olga"):
        audit_record(action="submit", actor=people[name], target_type="job", target_id=f"job-of-{name}")
    client.force_login(people["aud"])
    html = client.get("/audit/", {"action": "submit"}).content.decode()
    assert "job-of-ana" in html
    assert "job-of-ben" in html
    assert "job-of-olga" not in html


def test_an_admin_reads_the_whole_trail(client, people):
    for name in ("ana", "olga"):
        audit_record(action="submit", actor=people[name], target_type="job", target_id=f"job-of-{name}")
    client.force_login(people["root"])
    html = client.get("/audit/", {"action": "submit"}).content.decode()
    assert "job-of-ana" in html
    assert "job-of-olga" in html


def test_filters_narrow_by_actor_action_target_and_time(client, people):
    early = audit_record(action="submit", actor=people["ana"], target_type="job", target_id="j1")
    audit_record(action="cancel", actor=people["ana"], target_type="job", target_id="j1")
    audit_record(action="submit", actor=people["ben"], target_type="job", target_id="j2")
    client.force_login(people["root"])
    assert set(_page_ids(client, {"actor": "ana", "action": "submit"})) == {early.pk}
    assert len(_page_ids(client, {"target": "j1"})) == 2
    local_now = timezone.localtime(timezone.now() + timedelta(minutes=5))
    assert _page_ids(client, {"since": local_now.strftime("%Y-%m-%dT%H:%M"), "action": "submit"}) == []


def test_keyset_pages_walk_every_entry_once_newest_first(client, people):
    made = [audit_record(action="result_download", actor=people["ana"], target_id=str(n)).pk for n in range(120)]
    client.force_login(people["root"])
    assert _page_ids(client, {"action": "result_download"}) == list(reversed(made))


def test_the_csv_export_with_filters_equals_the_filtered_pages_rows(client, people):
    for n in range(70):
        audit_record(action="submit" if n % 3 else "cancel", actor=people["ana" if n % 2 else "ben"], target_id=f"t{n}")
    client.force_login(people["aud"])
    for params in ({"actor": "ana", "action": "submit"}, {"action": "cancel"}, {}):
        page_ids = _page_ids(client, params)
        assert page_ids, params
        assert _export_ids(client, params) == page_ids


def test_the_export_neutralizes_cells_a_spreadsheet_would_run(client, people):
    audit_record(action="submit", actor=people["ana"], target_type="job", target_id="=HYPERLINK(1)")
    client.force_login(people["root"])
    body = b"".join(client.get("/audit/export.csv").streaming_content).decode()
    assert "'=HYPERLINK(1)" in body


def test_sign_in_sign_out_and_a_failed_sign_in_are_audited(client, people):
    client.post("/accounts/login/", {"username": "ana", "password": "wrong"}, REMOTE_ADDR="198.51.100.4")
    client.post("/accounts/login/", {"username": "ana", "password": "ana"})
    client.post("/accounts/logout/")
    actions = list(AuditEntry.objects.order_by("id").values_list("action", "actor_username", "details"))
    assert actions[0] == ("login_failed", "", {"username": "ana"})
    assert [a[:2] for a in actions[1:]] == [("login", "ana"), ("logout", "ana")]
    assert AuditEntry.objects.get(action="login_failed").ip == "198.51.100.4"


def test_role_changes_in_the_admin_are_audited(client, people):
    client.force_login(people["root"])
    membership = Membership.objects.get(user=people["ben"])
    response = client.post(
        f"/admin/accounts/membership/{membership.pk}/change/",
        {"user": people["ben"].pk, "team": membership.team_id, "role": "auditor"},
    )
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="role_changed")
    assert entry.details == {"user": "ben", "team": "Risk", "role": "auditor", "changed": ["role"]}
    client.post(f"/admin/accounts/membership/{membership.pk}/delete/", {"post": "yes"})
    assert AuditEntry.objects.filter(action="role_removed", details__user="ben").exists()


def test_connection_changes_in_the_admin_are_audited_without_the_password(client, people):
    client.force_login(people["root"])
    form = {
        "name": "Prod",
        "base_url": "https://oml.example.com",
        "api_version": "v2",
        "username": "OMLUSER",
        "password": "Very-Secret-Pass-123",
        "poll_budget": 5,
    }
    assert client.post("/admin/jobs/connection/add/", form).status_code == 302
    from jobs.models import Connection

    connection = Connection.objects.get(name="Prod")
    client.post(f"/admin/jobs/connection/{connection.pk}/change/", {**form, "password": "", "poll_budget": 9})
    entries = list(AuditEntry.objects.filter(target_type="connection").order_by("id"))
    assert [e.action for e in entries] == ["connection_created", "connection_changed"]
    assert entries[1].details["changed"] == ["poll_budget"]
    assert "Very-Secret-Pass-123" not in str([e.details for e in entries])
