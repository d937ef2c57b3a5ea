"""Who may see and do what, for every route of the site.

The authorization matrix walks every route the URL resolver knows: each must be classified in ROUTES below
(a new route that is not fails the completeness test), and each classified route is requested by every role
against every kind of job, expecting exactly the answer the role rules give. A job a user may not see answers
404 everywhere; listings never name it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.models import Membership, Team
from accounts.tokens import token_create
from audit.access import can_view_audit
from jobs.models import Job
from jobs.selectors.access import can_modify, can_submit, job_for_user, visible_jobs
from jobs.services.jobs import connection_save, job_result_store
from jobs.states import JobKind, JobState

# --- The world: two teams, every role, one job of each kind -------------------------------------
# The connection granted to "Pricing" only: its URL and user name must never reach anyone else.
SECRET_PATH = "pricing-only-path"
SECRET_USER = "PRICING_OML_USER"

ROLES = ["anonymous", "analyst", "teammate", "outsider", "auditor", "admin"]
JOBS = ["own", "teammates", "other_team"]
# Who sees which job: "own" is the analyst's, "teammates" the teammate's (same team, history shared),
# "other_team" belongs to an analyst of another team.
SEES = {
    "analyst": {"own", "teammates"},
    "teammate": {"own", "teammates"},
    "outsider": {"other_team"},
    "auditor": {"own", "teammates"},
    "admin": {"own", "teammates", "other_team"},
}
OWNS = {"analyst": "own", "teammate": "teammates", "outsider": "other_team"}


@dataclass
class World:
    users: dict
    jobs: dict
    tokens: dict
    connection: object
    # Granted to the other team ("Pricing") only.
    secret: object = None


def _job(owner, team, conn) -> Job:
    job = Job.objects.create(
        owner=owner,
        team=team,
        connection=conn,
        kind=JobKind.DO_EVAL,
        script_name="return_df",
        async_flag=True,
    )
    # Arranged as finished with a stored result (set-up, not a move under test).
    Job.objects.filter(pk=job.pk).update(state=JobState.SUCCEEDED, finished_at=job.created_at)
    job_result_store(job_id=job.pk, chunks=[b'[{"A":1,"B":"x"}]'], content_type="application/json", row_count=1)
    job.refresh_from_db()
    return job


@pytest.fixture
def world(make_user, settings) -> World:
    # Sign-ins here are force_login: a fast hasher keeps the set-up of many users cheap. No retries to OML.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.OML_GET_RETRIES = 0
    team, other = Team.objects.create(name="Risk"), Team.objects.create(name="Pricing")
    users = {role: make_user(role) for role in ROLES if role != "anonymous"}
    users["admin"].is_staff = users["admin"].is_superuser = True
    users["admin"].save()
    for role, where, as_ in [
        ("analyst", team, "analyst"),
        ("teammate", team, "analyst"),
        ("outsider", other, "analyst"),
        ("auditor", team, "auditor"),
    ]:
        Membership.objects.create(user=users[role], team=where, role=as_)
    # A refused port: routes that ask OML for its scripts fail fast and say so.
    conn = connection_save(
        name="c", base_url="http://127.0.0.1:9", username="OMLUSER", password="pw", is_default=True, teams=[team, other]
    )
    secret = connection_save(
        name="Pricing only",
        base_url=f"http://127.0.0.1:9/{SECRET_PATH}",
        username=SECRET_USER,
        password="pw",
        teams=[other],
    )
    jobs = {
        "own": _job(users["analyst"], team, conn),
        "teammates": _job(users["teammate"], team, conn),
        "other_team": _job(users["outsider"], other, conn),
    }
    tokens = {role: token_create(user=user, name="matrix")[1] for role, user in users.items()}
    return World(users=users, jobs=jobs, tokens=tokens, connection=conn, secret=secret)


# --- The rules, route by route ------------------------------------------------------------------

LOGIN = "login"  # 302 to the sign-in page
DENIED = 403
HIDDEN = 404


@dataclass(frozen=True)
class Route:
    """How to request a route and what each role should get.

    `path` builds the URL from the job (and the world); `expect(role, job_name)` gives the expected status,
    or LOGIN. No answer of any route may name a job the role does not see; `lists_jobs` routes must also
    name every job it does see.
    """

    path: Callable
    expect: Callable
    method: str = "GET"
    api: bool = False
    lists_jobs: bool = False
    per_job: bool = True
    data: dict = field(default_factory=dict)


def _read(ok: int | set = 200):
    """A read of one job: the job if visible, 404 otherwise."""
    oks = {ok} if isinstance(ok, int) else ok

    def expect(role, job):
        if role == "anonymous":
            return LOGIN
        return oks if job in SEES[role] else HIDDEN

    return expect


def _modify(ok: int | set):
    """Cancel / re-run: the owner (or an admin); visible to others but refused (403); invisible is 404."""
    oks = {ok} if isinstance(ok, int) else ok

    def expect(role, job):
        if role == "anonymous":
            return LOGIN
        if job not in SEES[role]:
            return HIDDEN
        return oks if role == "admin" or OWNS.get(role) == job else DENIED

    return expect


def _pinner(ok: int | set):
    """Pin / unpin: the owner, the auditors of the job's team (a legal hold) and admins; visible to others but
    refused (403); invisible is 404."""
    oks = {ok} if isinstance(ok, int) else ok

    def expect(role, job):
        if role == "anonymous":
            return LOGIN
        if job not in SEES[role]:
            return HIDDEN
        return oks if role in ("admin", "auditor") or OWNS.get(role) == job else DENIED

    return expect


def _admins(role, job):
    if role == "anonymous":
        return LOGIN
    return 200 if role == "admin" else DENIED


def _clone(role, job):
    if role == "anonymous":
        return LOGIN
    if job not in SEES[role]:
        return HIDDEN
    return DENIED if role == "auditor" else 200


def _clone_made(ok: int):
    """Clone through the API: whoever sees the job and may submit gets a new job (`ok`); auditors 403."""

    def expect(role, job):
        answer = _clone(role, job)
        return ok if answer == 200 else answer

    return expect


def _signed_in(ok: int | set = 200):
    oks = {ok} if isinstance(ok, int) else ok
    return lambda role, job: LOGIN if role == "anonymous" else oks


def _submitter(ok: int | set = 200):
    oks = {ok} if isinstance(ok, int) else ok

    def expect(role, job):
        if role == "anonymous":
            return LOGIN
        return DENIED if role == "auditor" else oks

    return expect


def _auditors(role, job):
    if role == "anonymous":
        return LOGIN
    return 200 if role in ("auditor", "admin") else DENIED


def _public(ok: int | set = 200):
    oks = {ok} if isinstance(ok, int) else ok
    return lambda role, job: oks


def _job_path(template: str):
    return lambda w, job: template.format(uuid=w.jobs[job].uuid, conn=w.connection.pk)


def _fixed(path: str):
    return lambda w, job: path.format(conn=w.connection.pk)


ROUTES: dict[str, Route] = {
    # Pages about one job.
    "jobs:detail": Route(_job_path("/jobs/{uuid}/"), _read()),
    "jobs:detail_live": Route(_job_path("/jobs/{uuid}/live/"), _read({200, 286})),
    "jobs:clone": Route(_job_path("/jobs/{uuid}/clone/"), _clone),
    "jobs:cancel": Route(_job_path("/jobs/{uuid}/cancel/"), _modify(302), method="POST"),
    "jobs:rerun": Route(_job_path("/jobs/{uuid}/rerun/"), _modify(302), method="POST"),
    # Pinning answers 302 back to the job page whether it pinned or said why not (already pinned).
    "jobs:pin": Route(_job_path("/jobs/{uuid}/pin/"), _pinner(302), method="POST", data={"reason": "legal hold"}),
    "jobs:unpin": Route(_job_path("/jobs/{uuid}/unpin/"), _pinner(302), method="POST"),
    "jobs:storage": Route(_fixed("/storage/"), _admins, per_job=False),
    "results:result": Route(_job_path("/jobs/{uuid}/result/"), _read()),
    "results:result_raw": Route(_job_path("/jobs/{uuid}/result/raw/"), _read()),
    "results:result_download": Route(_job_path("/jobs/{uuid}/result.csv"), _read()),
    "results:compare": Route(_job_path("/jobs/compare/?a={uuid}&b={uuid}"), _read()),
    # Pages over many jobs: listings must not name a job the user may not see.
    "jobs:home": Route(_fixed("/"), _signed_in({200, 302}), per_job=False),
    "jobs:history": Route(_fixed("/jobs/"), _signed_in(), lists_jobs=True, per_job=False),
    "jobs:history_export": Route(_fixed("/jobs/export.csv"), _signed_in(), lists_jobs=True, per_job=False),
    # The live rows answer 286 (htmx: stop polling) when none of the listed jobs is still running.
    "jobs:history_rows": Route(_fixed("/jobs/rows/"), _signed_in({200, 286}), per_job=False),
    "results:analytics": Route(_fixed("/analytics/"), _signed_in(), per_job=False),
    "results:analytics_data": Route(_fixed("/analytics/gantt.json"), _signed_in(), per_job=False),
    # Composing.
    "jobs:compose": Route(_fixed("/jobs/new/"), _submitter(), per_job=False),
    "jobs:compose_scripts": Route(_fixed("/jobs/new/scripts/?connection={conn}"), _signed_in(), per_job=False),
    "jobs:compose_preview": Route(
        # A live fragment: it lists what is wrong (an auditor's connection they may not submit to) in a 200.
        _fixed("/jobs/new/preview/"),
        _signed_in(),
        method="POST",
        per_job=False,
        data={"kind": "do_eval", "script": "return_df"},
    ),
    # The user's own settings and the audit trail.
    "account": Route(_fixed("/account/"), _signed_in(), per_job=False),
    "account_tokens": Route(_fixed("/account/tokens/"), _signed_in(), per_job=False),
    "account_token_revoke": Route(_fixed("/account/tokens/999999/revoke/"), _signed_in(404), "POST", per_job=False),
    "audit": Route(_fixed("/audit/"), _auditors, per_job=False),
    # Notifications under the account menu: the user's own list and rules; no rule 999999 exists.
    "notifications:inbox": Route(_fixed("/account/notifications/"), _signed_in(), per_job=False),
    "notifications:mark_read": Route(_fixed("/account/notifications/read/"), _signed_in(302), "POST", per_job=False),
    "notifications:bell": Route(_fixed("/account/notifications/bell/"), _signed_in(), per_job=False),
    "notifications:rules": Route(_fixed("/account/notification-rules/"), _signed_in(), per_job=False),
    "notifications:rule_new": Route(_fixed("/account/notification-rules/new/"), _submitter(), per_job=False),
    "notifications:rule": Route(_fixed("/account/notification-rules/999999/"), _signed_in(404), per_job=False),
    "notifications:rule_edit": Route(
        _fixed("/account/notification-rules/999999/edit/"), _signed_in(404), per_job=False
    ),
    "notifications:rule_delete": Route(
        _fixed("/account/notification-rules/999999/delete/"), _signed_in(404), "POST", per_job=False
    ),
    "audit_export": Route(_fixed("/audit/export.csv"), _auditors, per_job=False),
    # Signing in and out; password management of Django's auth views.
    "login": Route(_fixed("/accounts/login/"), _public(), per_job=False),
    # The admin's sign-in page, throttled like the site's (the rest of the admin is tested below).
    "admin_login": Route(_fixed("/admin/login/"), _public({200, 302}), per_job=False),
    "logout": Route(_fixed("/accounts/logout/"), _public(302), method="POST", per_job=False),
    "password_change": Route(_fixed("/accounts/password_change/"), _signed_in(), per_job=False),
    "password_change_done": Route(_fixed("/accounts/password_change/done/"), _signed_in(), per_job=False),
    "password_reset": Route(_fixed("/accounts/password_reset/"), _public(), per_job=False),
    "password_reset_done": Route(_fixed("/accounts/password_reset/done/"), _public(), per_job=False),
    "password_reset_confirm": Route(_fixed("/accounts/reset/x/y-z/"), _public(), per_job=False),
    "password_reset_complete": Route(_fixed("/accounts/reset/done/"), _public(), per_job=False),
    # Single sign-on: not found while it is off, as here (tests/test_sso_*.py sign in through a real provider).
    "oidc_authentication_init": Route(_fixed("/oidc/authenticate/"), _public(404), per_job=False),
    "oidc_authentication_callback": Route(_fixed("/oidc/callback/?code=x&state=y"), _public(404), per_job=False),
    "healthz": Route(_fixed("/healthz"), _public({200, 503}), per_job=False),
    "livez": Route(_fixed("/livez"), _public(), per_job=False),
    "favicon": Route(_fixed("/favicon.ico"), _public(302), per_job=False),
    "readyz": Route(_fixed("/readyz"), _public({200, 503}), per_job=False),
    # The JSON API (Bearer tokens; anonymous is 401).
    "api:get_job": Route(_job_path("/api/v1/jobs/{uuid}"), _read(), api=True),
    "api:get_result": Route(_job_path("/api/v1/jobs/{uuid}/result"), _read(), api=True),
    "api:cancel_job": Route(_job_path("/api/v1/jobs/{uuid}/cancel"), _modify(409), method="POST", api=True),
    "api:rerun_job": Route(_job_path("/api/v1/jobs/{uuid}/rerun"), _modify(201), method="POST", api=True),
    "api:clone_job": Route(_job_path("/api/v1/jobs/{uuid}/clone"), _clone_made(201), method="POST", api=True, data={}),
    "api:compare_jobs": Route(_job_path("/api/v1/jobs/{uuid}/compare/{uuid}"), _read(), api=True),
    "api:download_result": Route(_job_path("/api/v1/jobs/{uuid}/result.csv"), _read(), api=True),
    "api:whoami": Route(_fixed("/api/v1/whoami"), _signed_in(), api=True, per_job=False),
    # The first pin of a job is made (201); the roles after find it pinned (409); unpinning likewise.
    "api:pin_job": Route(
        _job_path("/api/v1/jobs/{uuid}/pin"), _pinner({201, 409}), method="POST", api=True, data={"reason": "hold"}
    ),
    "api:unpin_job": Route(_job_path("/api/v1/jobs/{uuid}/pin"), _pinner({200, 409}), method="DELETE", api=True),
    "api:list_jobs": Route(_fixed("/api/v1/jobs"), _signed_in(), api=True, lists_jobs=True, per_job=False),
    "api:export_jobs": Route(_fixed("/api/v1/jobs/export"), _signed_in(), api=True, lists_jobs=True, per_job=False),
    "api:create_job": Route(
        _fixed("/api/v1/jobs"),
        _submitter(201),
        method="POST",
        api=True,
        per_job=False,
        data={"kind": "do_eval", "script": "return_df"},
    ),
    "api:list_rules": Route(_fixed("/api/v1/notification-rules"), _signed_in(), api=True, per_job=False),
    "api:create_rule": Route(
        _fixed("/api/v1/notification-rules"),
        _submitter(201),
        method="POST",
        api=True,
        per_job=False,
        data={"events": ["failed"], "channel": "inapp"},
    ),
    "api:read_rule": Route(_fixed("/api/v1/notification-rules/999999"), _signed_in(404), api=True, per_job=False),
    "api:replace_rule": Route(
        _fixed("/api/v1/notification-rules/999999"),
        _signed_in(404),
        method="PUT",
        api=True,
        per_job=False,
        data={"events": ["failed"], "channel": "inapp"},
    ),
    "api:delete_rule": Route(
        _fixed("/api/v1/notification-rules/999999"), _signed_in(404), method="DELETE", api=True, per_job=False
    ),
    "api:list_connections": Route(_fixed("/api/v1/connections"), _signed_in(), api=True, per_job=False),
    "api:list_scripts": Route(_fixed("/api/v1/connections/{conn}/scripts"), _signed_in(502), api=True, per_job=False),
    "api:openapi-json": Route(_fixed("/api/v1/openapi.json"), _public(), per_job=False),
    "api:openapi-view": Route(_fixed("/api/v1/docs"), _public(), per_job=False),
    "api:api-root": Route(_fixed("/api/v1/"), _public(404), per_job=False),
}
# Whole namespaces with rules of their own, tested elsewhere or below.
NAMESPACES = {
    "admin:": "Django's admin: staff only (test_the_admin_is_for_staff_only)",
}
# Routes outside the dashboard: the embedded OML engine authenticates with its own OAuth tokens.
ENGINE_ROUTES = {"token", "scripts", "envs", "execute", "execute-owner", "job", "job-result"}


def _route_names() -> set[str]:
    names: set[str] = set()

    def walk(patterns, namespace: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, namespace + (f"{pattern.namespace}:" if pattern.namespace else ""))
            elif isinstance(pattern, URLPattern):
                names.add(namespace + (pattern.name or f"<unnamed {pattern.pattern}>"))

    walk(get_resolver().url_patterns, "")
    return names


def test_every_route_of_the_site_is_classified_in_the_authorization_matrix():
    unclassified = sorted(
        name
        for name in _route_names()
        if name not in ROUTES
        and not any(name.startswith(ns) for ns in NAMESPACES)
        and name.removeprefix("omlengine-") not in ENGINE_ROUTES
    )
    assert unclassified == [], f"classify these routes in ROUTES: {unclassified}"
    assert not set(ROUTES) - _route_names(), "ROUTES names routes that no longer exist"


def _request(client, world: World, route: Route, role: str, job: str | None):
    path = route.path(world, job)
    headers = {}
    if route.api and role != "anonymous":
        headers["HTTP_AUTHORIZATION"] = f"Bearer {world.tokens[role]}"
    elif role != "anonymous":
        client.force_login(world.users[role])
    if route.method == "DELETE":
        return client.delete(path, **headers)
    if route.method == "PUT":
        return client.put(path, route.data, content_type="application/json", **headers)
    if route.method == "POST":
        if route.api:
            return client.post(path, route.data, content_type="application/json", **headers)
        return client.post(path, route.data, **headers)
    return client.get(path, **headers)


def _matches(response, expected, api: bool) -> bool:
    if expected == LOGIN:
        if api:
            return response.status_code == 401
        return response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    if isinstance(expected, set):
        return response.status_code in expected
    return response.status_code == expected


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_each_route_answers_each_role_as_the_rules_say(client, world, name):
    route = ROUTES[name]
    wrong = []
    for role in ROLES:
        for job in JOBS if route.per_job else [None]:
            client.logout()
            response = _request(client, world, route, role, job)
            expected = route.expect(role, job)
            if not _matches(response, expected, route.api):
                wrong.append(f"{role} on {job or name}: got {response.status_code}, expected {expected}")
            body = b"".join(response.streaming_content) if response.streaming else response.content
            for other in JOBS:
                if str(world.jobs[other].uuid).encode() in body and (role == "anonymous" or other not in SEES[role]):
                    wrong.append(f"{role} on {job or name}: the answer names job {other}, which {role} may not see")
            if route.lists_jobs and role != "anonymous" and response.status_code == 200:
                for other in JOBS:
                    if other in SEES[role] and str(world.jobs[other].uuid).encode() not in body:
                        wrong.append(f"{role}: the listing misses job {other}")
    assert wrong == [], "\n".join(wrong)


# --- Connections: granted to teams ----------------------------------------------------------------
# Who may see (list, read the scripts of) and use (submit to) the connection granted to "Pricing" only.
SEES_SECRET = {"outsider", "admin"}
USES_SECRET = {"outsider", "admin"}


def _grant_rule(yes: int | set, no: int | set, who: set[str]):
    return lambda role, job: LOGIN if role == "anonymous" else (yes if role in who else no)


SECRET_JOB = {"kind": "do_eval", "script": "return_df"}
# Every route that names a connection, asked about the "Pricing"-only one.
CONNECTION_ROUTES: dict[str, Route] = {
    "compose form": Route(_fixed("/jobs/new/"), _grant_rule(200, {200, 403}, SEES_SECRET), per_job=False),
    "compose submit": Route(
        lambda w, job: "/jobs/new/",
        _grant_rule(302, 403, USES_SECRET),
        method="POST",
        per_job=False,
        data={**SECRET_JOB, "connection": "secret"},
    ),
    "compose preview": Route(
        lambda w, job: "/jobs/new/preview/",
        _grant_rule(200, 200, USES_SECRET),
        method="POST",
        per_job=False,
        data={**SECRET_JOB, "connection": "secret"},
    ),
    "script picker": Route(
        lambda w, job: f"/jobs/new/scripts/?connection={w.secret.pk}", _grant_rule(200, 404, SEES_SECRET), per_job=False
    ),
    "history filter": Route(_fixed("/jobs/"), _grant_rule(200, 200, SEES_SECRET), per_job=False),
    "analytics filter": Route(_fixed("/analytics/"), _grant_rule(200, 200, SEES_SECRET), per_job=False),
    "api connections": Route(
        _fixed("/api/v1/connections"), _grant_rule(200, 200, SEES_SECRET), api=True, per_job=False
    ),
    "api scripts": Route(
        lambda w, job: f"/api/v1/connections/{w.secret.pk}/scripts",
        _grant_rule(502, 404, SEES_SECRET),
        api=True,
        per_job=False,
    ),
    "api submit": Route(
        _fixed("/api/v1/jobs"),
        _grant_rule(201, 403, USES_SECRET),
        method="POST",
        api=True,
        per_job=False,
        data={**SECRET_JOB, "connection": "secret"},
    ),
}


def _with_secret(world: World, route: Route) -> Route:
    if route.data.get("connection") != "secret":
        return route
    return Route(
        route.path,
        route.expect,
        route.method,
        route.api,
        per_job=False,
        data={**route.data, "connection": world.secret.pk},
    )


@pytest.mark.parametrize("name", sorted(CONNECTION_ROUTES))
def test_a_connection_granted_to_another_team_is_neither_shown_nor_usable(client, world, name):
    route = _with_secret(world, CONNECTION_ROUTES[name])
    wrong = []
    for role in ROLES:
        client.logout()
        before = Job.objects.count()
        response = _request(client, world, route, role, None)
        expected = route.expect(role, None)
        if not _matches(response, expected, route.api):
            wrong.append(f"{role}: got {response.status_code}, expected {expected}")
        body = b"".join(response.streaming_content) if response.streaming else response.content
        if role not in SEES_SECRET:
            for secret in (SECRET_PATH, SECRET_USER, world.secret.name):
                if secret.encode() in body:
                    wrong.append(f"{role}: the answer shows {secret!r} of a connection not granted to their teams")
        if role not in USES_SECRET and Job.objects.count() != before:
            wrong.append(f"{role}: a job was made on a connection not granted to their teams")
    assert wrong == [], "\n".join(wrong)


def test_the_admin_is_for_staff_only(client, world):
    assert client.get("/admin/")["Location"].startswith("/admin/login/")
    for role in ("analyst", "auditor"):
        client.force_login(world.users[role])
        assert client.get("/admin/").status_code == 302
    client.force_login(world.users["admin"])
    assert client.get("/admin/").status_code == 200


# --- The rules themselves -----------------------------------------------------------------------


def test_a_user_in_no_team_sees_only_their_own_jobs(world, make_user):
    loner = make_user("loner")
    mine = _job(loner, None, world.connection)
    assert list(visible_jobs(loner)) == [mine]


def test_an_analyst_of_a_team_that_does_not_share_history_sees_only_their_own_jobs(world):
    Team.objects.filter(name="Risk").update(shares_history=False)
    assert set(visible_jobs(world.users["analyst"])) == {world.jobs["own"]}
    # Auditors still see the whole team.
    assert set(visible_jobs(world.users["auditor"])) == {world.jobs["own"], world.jobs["teammates"]}


def test_a_user_in_several_teams_sees_the_shared_history_of_each(world):
    Membership.objects.create(user=world.users["analyst"], team=Team.objects.get(name="Pricing"), role="analyst")
    assert set(visible_jobs(world.users["analyst"])) == set(world.jobs.values())


def test_job_for_user_answers_404_for_a_job_the_user_may_not_see(world):
    from django.http import Http404

    with pytest.raises(Http404):
        job_for_user(world.users["outsider"], world.jobs["own"].uuid)
    with pytest.raises(Http404):
        job_for_user(world.users["outsider"], "not-a-uuid")
    assert job_for_user(world.users["auditor"], world.jobs["teammates"].uuid) == world.jobs["teammates"]


def test_auditors_are_read_only_and_may_read_the_audit_trail(world):
    auditor = world.users["auditor"]
    assert not can_submit(auditor)
    assert not any(can_modify(auditor, job) for job in world.jobs.values())
    assert can_view_audit(auditor)
    assert can_view_audit(world.users["admin"])
    assert not can_view_audit(world.users["analyst"])


def test_auditors_cannot_submit_cancel_or_rerun_through_pages_or_the_api(client, world):
    auditor, job = world.users["auditor"], world.jobs["own"]
    Job.objects.filter(pk=job.pk).update(state=JobState.QUEUED, finished_at=None)
    before = Job.objects.count()
    client.force_login(auditor)
    assert client.post("/jobs/new/", {"kind": "do_eval", "script": "return_df"}).status_code == 403
    assert client.post(f"/jobs/{job.uuid}/cancel/").status_code == 403
    assert client.post(f"/jobs/{job.uuid}/rerun/").status_code == 403
    client.logout()
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {world.tokens['auditor']}"}
    body = {"kind": "do_eval", "script": "return_df"}
    assert client.post("/api/v1/jobs", body, content_type="application/json", **bearer).status_code == 403
    assert client.post(f"/api/v1/jobs/{job.uuid}/cancel", **bearer).status_code == 403
    assert client.post(f"/api/v1/jobs/{job.uuid}/rerun", **bearer).status_code == 403
    assert Job.objects.count() == before
    assert Job.objects.get(pk=job.pk).state == JobState.QUEUED


def test_the_job_page_hides_the_buttons_an_auditor_may_not_use(client, world):
    job = world.jobs["own"]
    client.force_login(world.users["auditor"])
    page = client.get(f"/jobs/{job.uuid}/").content.decode()
    assert f"/jobs/{job.uuid}/cancel/" not in page
    assert f"/jobs/{job.uuid}/rerun/" not in page
    assert f"/jobs/{job.uuid}/clone/" not in page
    client.force_login(world.users["analyst"])
    assert f"/jobs/{job.uuid}/rerun/" in client.get(f"/jobs/{job.uuid}/").content.decode()
