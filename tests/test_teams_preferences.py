"""Each user picks the time zone their pages show times in, and the zone is named beside the times."""

from __future__ import annotations

from accounts.models import Profile


def test_the_account_page_saves_the_time_zone_and_pages_show_times_in_it(client, analyst):
    client.force_login(analyst)
    page = client.get("/account/").content.decode()
    assert "Times are shown in <strong>UTC</strong>" in page
    assert '<option value="Europe/Paris"' in page
    response = client.post("/account/", {"timezone": "Asia/Kolkata"})
    assert response.status_code == 302
    assert Profile.objects.get(user=analyst).timezone == "Asia/Kolkata"
    page = client.get("/account/").content.decode()
    assert "Times are shown in <strong>Asia/Kolkata</strong>" in page
    assert " IST</time>" in page


def test_an_unknown_time_zone_is_refused_and_nothing_changes(client, analyst):
    client.force_login(analyst)
    response = client.post("/account/", {"timezone": "Mars/Olympus"})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Profile.objects.filter(user=analyst).exclude(timezone="UTC").exists()


def test_the_audit_page_shows_times_in_the_users_zone_with_the_zone_named(client, make_user):
    from audit.services import audit_record

    admin = make_user("root", is_staff=True, is_superuser=True)
    Profile.objects.create(user=admin, timezone="America/New_York")
    audit_record(action="submit", actor=admin, target_id="x")
    client.force_login(admin)
    page = client.get("/audit/").content.decode()
    assert "Times in America/New_York" in page
    assert " EST</time>" in page or " EDT</time>" in page
