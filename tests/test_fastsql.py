"""The plain-SQL paths of submissions and polls read and write exactly what the ORM would: every statement of
omlpy_dashboard.fastsql is compared here with the ORM's answer."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Membership, Team
from accounts.tokens import token_create, user_for_token
from audit.models import AuditEntry
from audit.services import audit_record, audit_verify_chain
from jobs.models import Connection, Job, JobTransition
from jobs.selectors import access
from jobs.services.jobs import connection_save, job_create, job_transition, job_update_polling
from jobs.services.specs import parse_job_request
from jobs.worker.lifecycle import STILL_RUNNING_FIELDS, record_still_running
from omlpy_dashboard.fastsql import (
    add_to_rows,
    audit_head,
    insert_one,
    membership_rows,
    model_columns,
    model_from_row,
    read_with,
    token_and_user,
    update_each_limit,
)
from tests.conftest import analysts_team

pytestmark = pytest.mark.django_db


@pytest.fixture
def conn():
    return connection_save(
        name="Main & <test>",
        base_url="https://oml.example.com",
        username="OMLUSER",
        password="pw",
        is_default=True,
        teams=[analysts_team()],
    )


def test_model_from_row_converts_like_a_queryset(conn):
    with connection.cursor() as cursor:
        sql = f"SELECT {model_columns(Connection, 'c')} FROM jobs_connection c WHERE c.id = %s"  # noqa: S608
        cursor.execute(sql, [conn.pk])
        row = cursor.fetchone()
    read = model_from_row(Connection, row)
    expected = Connection.objects.get(pk=conn.pk)
    for field in Connection._meta.concrete_fields:
        assert getattr(read, field.attname) == getattr(expected, field.attname), field.name
    assert read.is_default is True
    assert isinstance(read.created_at, datetime)
    assert timezone.is_aware(read.created_at)
    assert read._state.adding is False
    assert read._state.db == "default"


def test_default_connection_is_the_one_marked_default(conn):
    other = connection_save(name="Other", base_url="https://b.example.com", username="U", password="pw")
    assert Connection.default().pk == conn.pk
    connection_save(
        connection=other, name="Other", base_url="https://b.example.com", username="U", password=None, is_default=True
    )
    assert Connection.default().pk == other.pk
    Connection.objects.all().delete()
    assert Connection.default() is None


def test_insert_one_stores_what_save_would(conn, analyst):
    spec = parse_job_request({"kind": "do_eval", "script": "group_count", "parameters": {"n": 3, "name": "é\"'<"}})
    job = insert_one(Job(owner=analyst, **spec.model_fields()))
    stored = Job.objects.get(pk=job.pk)
    assert stored.uuid == job.uuid
    assert stored.parameters == {"n": 3, "name": "é\"'<"}
    assert stored.state == "queued"
    assert stored.connection_id == conn.pk
    assert stored.owner_id == analyst.pk
    assert timezone.is_aware(stored.created_at)
    assert stored.created_at == job.created_at
    with pytest.raises(ValueError, match="already saved"):
        insert_one(job)


def test_token_user_is_a_complete_user_with_aware_times(analyst):
    analyst.last_login = timezone.now() - timedelta(days=1)
    analyst.save()
    token, raw = token_create(user=analyst, name="t")
    user = user_for_token(raw)
    assert user.pk == analyst.pk
    assert user.username == analyst.username
    assert user.is_authenticated
    assert timezone.is_aware(user.last_login)
    assert user.last_login == analyst.last_login
    assert user.date_joined == analyst.date_joined
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert user_for_token(raw + "x") is None
    analyst.is_active = False
    analyst.save()
    assert user_for_token(raw) is None


def test_the_token_statement_reads_the_token_as_the_orm_does_in_one_query(analyst):
    from accounts.models import ApiToken
    from accounts.tokens import token_lookup

    token, raw = token_create(user=analyst, name="ro", days=3, read_only=True)
    with CaptureQueriesContext(connection) as queries:
        auth = token_lookup(raw)
    # The statement, and the one write noting the first use.
    assert [q["sql"].split()[0] for q in queries] == ["SELECT", "UPDATE"]
    expected = ApiToken.objects.get(pk=token.pk)
    for field in ApiToken._meta.concrete_fields:
        if field.name != "last_used_at":  # noted by this very lookup, after the statement read it
            assert getattr(auth.token, field.attname) == getattr(expected, field.attname), field.name
    assert timezone.is_aware(auth.expires_at)
    assert auth.read_only
    assert not auth.expired
    assert auth.user.pk == analyst.pk
    # Used again within a minute: the statement alone.
    with CaptureQueriesContext(connection) as queries:
        assert token_lookup(raw).token.last_used_at == expected.last_used_at
    assert len(queries) == 1


def test_an_expired_token_is_found_marked_expired_and_authenticates_no_one(analyst):
    from accounts.models import ApiToken
    from accounts.tokens import token_lookup

    token, raw = token_create(user=analyst, name="old")
    past = timezone.now() - timedelta(seconds=1)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=past)
    auth = token_lookup(raw)
    assert auth.expired
    assert auth.expires_at == ApiToken.objects.get(pk=token.pk).expires_at
    assert user_for_token(raw) is None
    # An expired token's use is not noted.
    assert ApiToken.objects.get(pk=token.pk).last_used_at is None


def test_memberships_are_read_once_per_user_object(make_user):
    ana = make_user("ana")
    team = Team.objects.create(name="Risk")
    Membership.objects.create(user=ana, team=team, role=Membership.Role.ANALYST)
    with CaptureQueriesContext(connection) as queries:
        assert access.can_submit(ana)
        assert not access.is_auditor(ana)
        assert access.home_team_id(ana) == team.pk
    assert len(queries) == 1


def test_memberships_read_the_grants_of_each_team_in_the_same_statement(make_user):
    ana = make_user("ana")
    risk, pricing, idle = (Team.objects.create(name=name) for name in ("Risk", "Pricing", "Idle"))
    Membership.objects.create(user=ana, team=risk, role=Membership.Role.ANALYST)
    Membership.objects.create(user=ana, team=pricing, role=Membership.Role.AUDITOR)
    Membership.objects.create(user=ana, team=idle, role=Membership.Role.ANALYST)
    a, b, c, d = (
        connection_save(name=name, base_url=f"https://{name}.example.com", username="U", password="pw")
        for name in "abcd"
    )
    a.teams.set([risk, pricing])
    b.teams.set([risk])
    c.teams.set([pricing])
    with CaptureQueriesContext(connection) as queries:
        roles = access.memberships(ana)
        visible = access.visible_connection_ids(ana)
        usable = access.usable_connection_ids(ana)
        home = access.home_team_id(ana, connection_id=b.pk)
    assert len(queries) == 1
    # What the ORM says, team by team.
    for role in roles:
        granted = Connection.objects.filter(teams__id=role.team_id).values_list("pk", flat=True)
        assert role.connection_ids == set(granted)
    assert [role.team_name for role in roles] == ["Idle", "Pricing", "Risk"]
    assert visible == {a.pk, b.pk, c.pk}
    # An auditor's team makes its connections visible, never usable.
    assert usable == {a.pk, b.pk}
    assert d.pk not in visible
    assert home == risk.pk


def test_a_submission_makes_a_fixed_small_number_of_statements(conn, analyst):
    Membership.objects.create(user=analyst, team=Team.objects.create(name="Risk"), role=Membership.Role.ANALYST)
    spec = parse_job_request({"kind": "do_eval", "script": "group_count"})
    with CaptureQueriesContext(connection) as queries:
        job = job_create(owner=analyst, spec=spec)
    statements = [q["sql"] for q in queries]
    # One savepoint: job_create's transaction, nested in the test's; the audit entry takes none of its own.
    assert sum(sql.startswith("SAVEPOINT") for sql in statements) == 1
    assert sum(sql.startswith("INSERT") for sql in statements) == 2
    # Memberships, the audit chain's head (and its lock on PostgreSQL): nothing per field or per check.
    assert sum(sql.startswith("SELECT") for sql in statements) <= 3
    assert AuditEntry.objects.filter(target_id=str(job.uuid), action="submit").count() == 1
    assert audit_verify_chain().ok


def test_audit_chain_stays_valid_through_plain_inserts(analyst):
    for n in range(5):
        audit_record(action="submit", actor=analyst, target_type="job", target_id=str(n), details={"n": n})
    report = audit_verify_chain()
    assert report.ok
    assert report.checked == 5


def test_poll_update_only_touches_a_pending_job(conn, analyst):
    spec = parse_job_request({"kind": "do_eval", "script": "group_count"})
    job = job_create(owner=analyst, spec=spec)
    now = timezone.now()
    assert job_update_polling(job_id=job.pk, requests=1, next_poll_at=now, last_polled_at=now) == 0
    job_transition(job_id=job.pk, to_state="submitting", reason="t")
    job_transition(job_id=job.pk, to_state="pending", reason="t", next_poll_at=now, oml_job_url="https://x/1")
    later = now + timedelta(seconds=5)
    assert (
        job_update_polling(
            job_id=job.pk, requests=2, next_poll_at=later, last_polled_at=now, oml_elapsed_seconds=None, last_error=""
        )
        == 1
    )
    job_update_polling(job_id=job.pk, requests=1, next_poll_at=later, last_polled_at=now, oml_elapsed_seconds=1.5)
    job.refresh_from_db()
    assert (job.poll_count, job.next_poll_at, job.oml_elapsed_seconds) == (3, later, 1.5)
    assert JobTransition.objects.filter(job=job).count() == 2
    with pytest.raises(TypeError):
        job_update_polling(job_id=job.pk, state="succeeded")


def _pending_jobs(analyst, count: int) -> list[Job]:
    spec = parse_job_request({"kind": "do_eval", "script": "group_count"})
    jobs = []
    for number in range(count):
        job = job_create(owner=analyst, spec=spec)
        job_transition(job_id=job.pk, to_state="submitting", reason="t")
        job_transition(
            job_id=job.pk,
            to_state="pending",
            reason="t",
            next_poll_at=timezone.now(),
            oml_job_url=f"https://x/{number}",
            poll_log={"first": [[1.0, 202, "RUNNING", None, 5]], "last": [], "dropped": 0},
        )
        jobs.append(job)
    return jobs


def _still_running(job: Job, number: int, now: datetime) -> dict:
    return {
        "pk": job.pk,
        "next_poll_at": now + timedelta(seconds=number + 1),
        "last_polled_at": now,
        # Null and numbers mixed, so that no column's type is decided by its first row alone.
        "oml_elapsed_seconds": None if number % 3 == 0 else number * 1.5,
        "oml_last_running_at": now - timedelta(seconds=number),
        "last_error": "" if number % 2 else "OML did not answer",
        "poll_log": {
            "first": [[1.0, 202, "RUNNING", None, 5]],
            "last": [[2.0 + number, 202, "é", 0.5, 7]],
            "dropped": 0,
        },
        "poll_count": 1 + number % 2,
    }


_COMPARED = ("state", *STILL_RUNNING_FIELDS, "poll_count")


def test_still_running_rows_are_written_in_one_statement_exactly_as_the_orm_writes_them(conn, analyst):
    batched, by_orm = _pending_jobs(analyst, 6), _pending_jobs(analyst, 6)
    now = timezone.now()
    # The last of each set is cancelled between its poll and the write: neither path may touch it.
    for job in (batched[-1], by_orm[-1]):
        assert job_transition(job_id=job.pk, to_state="cancelled", reason="cancelled by analyst")
    untouched_before = {
        field.attname: getattr(Job.objects.get(pk=batched[-1].pk), field.attname) for field in Job._meta.concrete_fields
    }
    rows = [_still_running(job, number, now) for number, job in enumerate(batched)]
    with CaptureQueriesContext(connection) as queries:
        written = record_still_running(rows)
    assert len(queries) == 1
    assert queries[0]["sql"].startswith("UPDATE")
    assert written == 5
    for number, job in enumerate(by_orm):
        row = _still_running(job, number, now)
        fields = {name: row[name] for name in STILL_RUNNING_FIELDS}
        Job.objects.filter(pk=job.pk, state="pending").update(**fields, poll_count=F("poll_count") + row["poll_count"])
    for mine, theirs in zip(batched, by_orm, strict=True):
        got = Job.objects.values(*_COMPARED).get(pk=mine.pk)
        expected = Job.objects.values(*_COMPARED).get(pk=theirs.pk)
        assert got == expected
    untouched_after = {
        field.attname: getattr(Job.objects.get(pk=batched[-1].pk), field.attname) for field in Job._meta.concrete_fields
    }
    assert untouched_after == untouched_before
    # Each row changed once: the counters grew by the row's amount, not more.
    assert [Job.objects.get(pk=job.pk).poll_count for job in batched[:-1]] == [1, 2, 1, 2, 1]


def test_a_row_named_twice_is_refused_and_nothing_is_written(conn, analyst):
    (job,) = _pending_jobs(analyst, 1)
    now = timezone.now()
    before = Job.objects.values(*_COMPARED).get(pk=job.pk)
    with pytest.raises(ValueError, match="more than once"):
        record_still_running([_still_running(job, 1, now), _still_running(job, 2, now)])
    assert Job.objects.values(*_COMPARED).get(pk=job.pk) == before


def test_one_statement_holds_a_whole_sweep_batch():
    # The sweep's default batch and the benchmark's (1,000) fit one statement on either database.
    assert update_each_limit(len(STILL_RUNNING_FIELDS) + 1) >= 1000


def test_read_with_gives_a_job_and_its_connection_as_select_related_does(conn, analyst):
    job = job_create(owner=analyst, spec=parse_job_request({"kind": "do_eval", "script": "group_count"}))
    with CaptureQueriesContext(connection) as queries:
        read = read_with(Job, "connection", id=job.pk, state="queued")
        assert read.connection.name == conn.name
    assert len(queries) == 1
    expected = Job.objects.select_related("connection").get(pk=job.pk)
    for field in Job._meta.concrete_fields:
        assert getattr(read, field.attname) == getattr(expected, field.attname), field.name
    for field in Connection._meta.concrete_fields:
        assert getattr(read.connection, field.attname) == getattr(expected.connection, field.attname), field.name
    assert read_with(Job, "connection", id=job.pk, state="pending") is None
    assert read_with(Job, "connection", id=job.pk + 1000, state="queued") is None


def test_a_poll_whose_lease_ran_out_is_not_written_over_the_next_claim(conn, analyst):
    first, second = _pending_jobs(analyst, 2)
    now = timezone.now()
    leased_until = now + timedelta(seconds=30)
    Job.objects.filter(pk__in=[first.pk, second.pk]).update(next_poll_at=leased_until)
    # Another sweep claimed the second job again once the lease had run out.
    Job.objects.filter(pk=second.pk).update(next_poll_at=leased_until + timedelta(seconds=31))
    before = Job.objects.values(*_COMPARED).get(pk=second.pk)
    rows = [_still_running(first, 1, now), _still_running(second, 2, now)]
    assert record_still_running(rows, leased_until=leased_until) == 1
    assert Job.objects.values(*_COMPARED).get(pk=second.pk) == before
    assert Job.objects.get(pk=first.pk).next_poll_at == rows[0]["next_poll_at"]


# --- Each statement of omlpy_dashboard.fastsql against the ORM's answer (SQLite, and PostgreSQL with DATABASE_URL) --


def _same_instance(read, expected) -> None:
    assert type(read) is type(expected)
    for field in type(expected)._meta.concrete_fields:
        assert getattr(read, field.attname) == getattr(expected, field.attname), field.name


def test_token_and_user_answers_what_the_orm_answers(make_user):
    from django.contrib.auth import get_user_model

    from accounts.models import ApiToken
    from accounts.tokens import hash_token

    ana = make_user("ana")
    ana.last_login = timezone.now() - timedelta(hours=3)
    ana.save()
    idle = make_user("idle")
    now = timezone.now()
    tokens = {}
    for name, owner in (("never", ana), ("recent", ana), ("long", ana), ("revoked", ana), ("inactive", idle)):
        token, raw = token_create(user=owner, name=name)
        tokens[name] = raw
    ApiToken.objects.filter(name="recent").update(last_used_at=now - timedelta(seconds=10))
    ApiToken.objects.filter(name="long").update(last_used_at=now - timedelta(days=2))
    ApiToken.objects.filter(name="revoked").update(revoked_at=now)
    idle.is_active = False
    idle.save()
    stale_before = now - timedelta(minutes=1)
    answers = {}
    for name, raw in [*tokens.items(), ("unknown", tokens["never"] + "x")]:
        read = token_and_user(ApiToken, get_user_model(), hash_token(raw), stale_before)
        expected = (
            ApiToken.objects.select_related("user")
            .filter(key_hash=hash_token(raw), revoked_at__isnull=True, user__is_active=True)
            .first()
        )
        if expected is None:
            assert read is None, name
            answers[name] = None
            continue
        stale, token, user = read
        _same_instance(token, expected)
        _same_instance(user, expected.user)
        assert stale is (expected.last_used_at is None or expected.last_used_at < stale_before), name
        assert timezone.is_aware(token.expires_at)
        assert timezone.is_aware(user.last_login)
        answers[name] = stale
    assert answers == {
        "never": True,
        "recent": False,
        "long": True,
        "revoked": None,
        "inactive": None,
        "unknown": None,
    }


def test_membership_rows_answer_what_the_orm_answers(make_user):
    ana = make_user("ana")
    loner = make_user("loner")
    risk, pricing, idle, other = (Team.objects.create(name=name) for name in ("Risk", "Pricing", "Idle", "Other"))
    Team.objects.filter(pk=pricing.pk).update(shares_history=True)
    Membership.objects.create(user=ana, team=risk, role=Membership.Role.ANALYST)
    Membership.objects.create(user=ana, team=pricing, role=Membership.Role.AUDITOR)
    Membership.objects.create(user=ana, team=idle, role=Membership.Role.LEAD)
    a, b, c = (
        connection_save(name=name, base_url=f"https://{name}.example.com", username="U", password="pw")
        for name in "abc"
    )
    a.teams.set([risk, pricing])
    b.teams.set([risk, other])
    c.teams.set([other])
    for user in (ana, loner):
        read = membership_rows(Membership, Team, Connection.teams.through, user.pk)
        expected = list(
            Membership.objects.filter(user_id=user.pk)
            .order_by("team__name", "team_id")
            .values_list("team_id", "team__name", "role", "team__shares_history", "team__connections")
        )
        # Teams in the same order; a team's connections in any order.
        assert sorted(read) == sorted(expected)
        assert list(dict.fromkeys(row[0] for row in read)) == list(dict.fromkeys(row[0] for row in expected))
    assert [row[1] for row in membership_rows(Membership, Team, Connection.teams.through, ana.pk)] == [
        "Idle",
        "Pricing",
        "Risk",
        "Risk",
    ]
    assert membership_rows(Membership, Team, Connection.teams.through, loner.pk) == []


def test_audit_head_answers_what_the_orm_answers(analyst):
    def orm_head():
        return AuditEntry.objects.order_by("-id").values_list("entry_hash", "key_id").first()

    assert audit_head(AuditEntry) is None
    assert orm_head() is None
    for n in range(3):
        audit_record(action="submit", actor=analyst, target_type="job", target_id=str(n))
        assert audit_head(AuditEntry) == orm_head()
    assert audit_head(AuditEntry)[1] != ""


def test_insert_one_writes_an_audit_entry_as_save_does(analyst):
    content = {
        "actor": analyst,
        "actor_username": analyst.username,
        "action": "submit",
        "ip": "10.0.0.1",
        "target_type": "job",
        "target_id": "x",
        "details": {"name": "é\"'<", "n": [1, 2]},
        "prev_hash": "0" * 64,
        "entry_hash": "1" * 64,
        "key_id": "abcd1234",
        "at": timezone.now(),
    }
    inserted = insert_one(AuditEntry(**content))
    saved = AuditEntry(**content)
    saved.save(force_insert=True)
    first, second = AuditEntry.objects.get(pk=inserted.pk), AuditEntry.objects.get(pk=saved.pk)
    for field in AuditEntry._meta.concrete_fields:
        if field.name != "id":
            assert getattr(first, field.attname) == getattr(second, field.attname), field.name
    assert inserted.pk != saved.pk
    assert inserted._state.adding is False


def test_the_rebuilt_tally_equals_the_one_kept_by_the_transitions(conn, analyst):
    from jobs.models import JobTally
    from jobs.services.tally import tally_rebuild, tally_rows
    from tests.results_support import finish_async, make_job, store_result

    team = Team.objects.create(name="Risk")
    Membership.objects.create(user=analyst, team=team, role=Membership.Role.ANALYST)
    started = timezone.now() - timedelta(hours=1)
    for index, state in enumerate(["succeeded", "succeeded", "failed", "succeeded"]):
        job = make_job(analyst, **({"team": team} if index % 2 else {}))
        if state == "succeeded" and index != 3:
            store_result(job, {"n": index})
        finish_async(job, created=started, queue=1, oml=2, fetch=1, state=state)
    make_job(analyst)  # still queued: not tallied
    kept = tally_rows({team.pk})
    assert sum(row.jobs for row in kept) == 4
    assert sum(row.results for row in kept) == 2
    assert tally_rebuild() == JobTally.objects.count()
    assert tally_rows({team.pk}) == kept


def test_add_to_rows_adds_what_the_orm_adds():
    from metrics.models import MetricCounter
    from omlpy_dashboard.counting import add_to_row

    # Three flushes: new series only; new and existing ones, more than one statement's worth; existing ones only.
    flushes = [
        [("a_total", '{"x":"1"}', 1.0), ("b_total", "{}", 2.5)],
        [("a_total", '{"x":"1"}', 3.0)] + [("c_total", f'{{"n":"{n}"}}', float(n)) for n in range(650)],
        [("b_total", "{}", 0.5), ("c_total", '{"n":"7"}', 1.0)],
    ]

    def table() -> dict:
        return {
            (name, labels): value
            for name, labels, value in MetricCounter.objects.values_list("name", "labels", "value")
        }

    for rows in flushes:
        add_to_rows(MetricCounter, ("name", "labels"), ("value",), rows)
    written = table()
    MetricCounter.objects.all().delete()
    for rows in flushes:
        for name, labels, value in rows:
            add_to_row(MetricCounter, {"name": name, "labels": labels}, {"value": value})
    assert table() == written
    assert written[("a_total", '{"x":"1"}')] == 4.0
    assert written[("b_total", "{}")] == 3.0
    assert written[("c_total", '{"n":"7"}')] == 8.0
    assert len(written) == 652
