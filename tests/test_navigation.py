"""The header offers what the signed-in user may do, and nothing else."""

from accounts.models import Membership, Team


def test_the_header_offers_new_job_to_analysts_but_not_to_auditors(client, make_user):
    team = Team.objects.create(name="Risk")
    analyst, auditor = make_user("ana"), make_user("audrey")
    Membership.objects.create(user=analyst, team=team, role=Membership.Role.ANALYST)
    Membership.objects.create(user=auditor, team=team, role=Membership.Role.AUDITOR)

    client.force_login(analyst)
    page = client.get("/jobs/").content.decode()
    assert 'href="/jobs/new/">New job' in page
    assert ">Audit<" not in page

    client.force_login(auditor)
    page = client.get("/jobs/").content.decode()
    assert "/jobs/new/" not in page
    assert ">Audit<" in page
