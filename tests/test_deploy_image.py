"""The production image and the Kubernetes layout: what hadolint and the schemas cannot see.

`make lint` checks that the Dockerfile is well written and that every manifest is a valid Kubernetes object.
These tests check that they fit this project: the image builds with the project's own build script and
installs only what its target needs, the build context leaves local state and secrets out, and the
manifests run management commands that exist, probe URLs that resolve and answer the kubelet, and keep
the invariants a process relies on (one beat, migrations before anything starts).
"""

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands
from django.test import Client, override_settings
from django.urls import Resolver404, resolve

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
IMAGE = "omlpy-dashboard:latest"
TARGETS = ("dashboard", "engine")


# --- The Dockerfile, read as stages of instructions -------------------------------------------------------
@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [arguments for name, arguments in self.instructions if name == keyword]


def _dockerfile_stages() -> dict[str, Stage]:
    text = (ROOT / "Dockerfile").read_text()
    # Comment lines may sit inside a continued instruction; Docker drops them before joining the lines.
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, arguments = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            base, _, name = re.sub(r"--platform=\S+\s+", "", arguments).partition(" AS ")
            current = Stage(name=name.strip() or base.strip(), base=base.strip())
            stages[current.name] = current
        elif current is not None:
            current.instructions.append((keyword, arguments.strip()))
    return stages


STAGES = _dockerfile_stages()


def _chain(target: str) -> list[Stage]:
    """The target and the stages it is built FROM, base first: what its filesystem and settings inherit."""
    chain = []
    name: str | None = target
    while name in STAGES:
        chain.insert(0, STAGES[name])
        name = STAGES[name].base
    return chain


def _stages_used(target: str) -> list[Stage]:
    """Every stage whose work can end up in the target: its chain and what it copies --from, recursively."""
    seen: dict[str, Stage] = {}
    pending = [target]
    while pending:
        for stage in _chain(pending.pop()):
            if stage.name not in seen:
                seen[stage.name] = stage
                pending += re.findall(r"--from=(\S+)", " ".join(stage.args("COPY")))
    return list(seen.values())


def _env(chain: list[Stage]) -> dict[str, str]:
    values: dict[str, str] = {}
    for stage in chain:
        for arguments in stage.args("ENV"):
            values.update(pair.split("=", 1) for pair in shlex.split(arguments))
    return values


def _installed_requirement_files(target: str) -> list[str]:
    files = []
    for stage in _stages_used(target):
        for command in stage.args("RUN"):
            for install in re.findall(r"pip install ([^&;|]+)", command):
                files += re.findall(r"(?:-r|--requirement)\s+(\S+)", install)
    return sorted(files)


# --- .dockerignore, matched as Docker matches it -------------------------------------------------------------
def _dockerignore_rule(pattern: str) -> tuple[bool, re.Pattern[str]]:
    negated = pattern.startswith("!")
    pattern = pattern.removeprefix("!").strip().strip("/")
    regex = ""
    position = 0
    while position < len(pattern):
        char = pattern[position]
        if pattern.startswith("**/", position):
            regex, position = regex + "(.*/)?", position + 3
            continue
        if pattern.startswith("**", position):
            regex, position = regex + ".*", position + 2
            continue
        if char == "[":
            end = pattern.index("]", position)
            regex += pattern[position : end + 1]
            position = end + 1
            continue
        regex += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        position += 1
    return negated, re.compile(regex)


def _excluded_from_build_context(path: str) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parent folders decides."""
    rules = [
        _dockerignore_rule(line)
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = path.split("/")
    candidates = [path, *("/".join(parts[:depth]) for depth in range(1, len(parts)))]
    excluded = False
    for negated, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


# --- The Kubernetes manifests ------------------------------------------------------------------------------
def _manifests() -> dict[str, list[dict[str, Any]]]:
    return {
        path.name: [document for document in yaml.safe_load_all(path.read_text()) if document]
        for path in sorted(KUBERNETES.glob("*.yaml"))
    }


MANIFESTS = _manifests()
RESOURCES = [
    resource for name, documents in MANIFESTS.items() if name != "kustomization.yaml" for resource in documents
]


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _commands() -> list[str]:
    """Every command line a manifest runs: containers, init containers, exec probes and hooks."""
    lines = _walk(RESOURCES)
    return [" ".join(value) for key, value in lines if key in {"command", "args"} and isinstance(value, list)]


def _http_probes() -> list[dict[str, Any]]:
    return [value for key, value in _walk(RESOURCES) if key == "httpGet"]


def _workload(name: str) -> dict[str, Any]:
    return next(r for r in RESOURCES if r["kind"] in {"Deployment", "Job"} and r["metadata"]["name"] == name)


def _pod_specs() -> list[dict[str, Any]]:
    return [r["spec"]["template"]["spec"] for r in RESOURCES if r["kind"] in {"Deployment", "Job"}]


def _configmap() -> dict[str, str]:
    return next(r for r in RESOURCES if r["kind"] == "ConfigMap")["data"]


# --- The image --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", TARGETS)
def test_image_builds_its_static_files_with_the_projects_build_script(target):
    used = _stages_used(target)
    builders = [stage for stage in used if any("deploy/build.sh" in command for command in stage.args("RUN"))]
    assert builders, f"no stage of {target} runs deploy/build.sh"
    assert _env(_chain(builders[0].name)).get("STATIC_ROOT") == "/app/staticfiles"
    assert _env(_chain(target)).get("STATIC_ROOT") == "/app/staticfiles"
    assert not any("collectstatic" in command for stage in used for command in stage.args("RUN"))
    copies = " ".join(stage_copy for stage in _chain(target) for stage_copy in stage.args("COPY"))
    assert builders[0] in _chain(target) or f"--from={builders[0].name} /app/staticfiles" in copies


def test_dashboard_image_installs_the_dashboards_requirements_only():
    assert _installed_requirement_files("dashboard") == ["requirements.txt"]


def test_engine_image_adds_the_engines_requirements_and_never_the_dev_tools():
    assert "requirements-engine.txt" in _installed_requirement_files("engine")
    assert "requirements-dev.txt" not in _installed_requirement_files("engine")


@pytest.mark.parametrize("target", TARGETS)
def test_image_runs_as_the_non_root_uid_the_pods_require(target):
    users = [user for stage in _chain(target) for user in stage.args("USER")]
    assert users, f"{target} sets no USER: it would run as root"
    uid = users[-1].split(":")[0]
    # Numeric, so that the kubelet can check runAsNonRoot against the image itself.
    assert uid.isdigit()
    assert int(uid) != 0
    assert {spec["securityContext"]["runAsUser"] for spec in _pod_specs()} == {int(uid)}


@pytest.mark.parametrize("target", TARGETS)
def test_image_starts_gunicorn_with_the_projects_configuration(target):
    commands = [command for stage in _chain(target) for command in stage.args("CMD")]
    assert json.loads(commands[-1]) == [
        "gunicorn",
        "-c",
        "deploy/gunicorn.conf.py",
        "omlpy_dashboard.wsgi:application",
    ]


@pytest.mark.parametrize("path", [".venv/bin/python", ".git/HEAD", "var/db.sqlite3", ".env", ".env.production"])
def test_build_context_leaves_out_local_state_and_secrets(path):
    assert _excluded_from_build_context(path)


@pytest.mark.parametrize(
    "path", ["jobs/__pycache__/models.cpython-311.pyc", ".pytest_cache/README.md", "tests/conftest.py", "bench/x.py"]
)
def test_build_context_leaves_out_caches_tests_and_benchmarks(path):
    assert _excluded_from_build_context(path)


@pytest.mark.parametrize(
    "path", ["manage.py", "requirements.txt", "deploy/build.sh", "deploy/gunicorn.conf.py", "jobs/models.py"]
)
def test_build_context_keeps_what_the_image_needs(path):
    assert not _excluded_from_build_context(path)


# --- The manifests ----------------------------------------------------------------------------------------------
def test_manifests_run_only_management_commands_that_exist():
    named = {name for command in _commands() for name in re.findall(r"manage\.py\s+([\w-]+)", command)}
    assert {"migrate", "sweep_probe"} <= named
    assert sorted(named - set(get_commands())) == []


@pytest.mark.parametrize("path", sorted({probe["path"] for probe in _http_probes()}))
def test_http_probe_path_resolves_in_the_url_conf(path):
    try:
        resolve(path)
    except Resolver404:
        pytest.fail(f"{path} is probed but no URL answers it")


@pytest.mark.django_db
@pytest.mark.parametrize("path", sorted({probe["path"] for probe in _http_probes()}))
def test_http_probe_answers_the_kubelet_with_production_security_settings(path):
    # The kubelet asks over plain http, from the node, with the pod's address as Host: neither the host
    # check nor the redirect to https may turn it away.
    headers = {header["name"]: header["value"] for header in _probe_headers(path)}
    allowed_hosts = _configmap()["ALLOWED_HOSTS"].split(",")
    with override_settings(
        ALLOWED_HOSTS=allowed_hosts,
        SECURE_SSL_REDIRECT=True,
        SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
    ):
        response = Client().get(path, headers={"Host": "10.244.1.7:8000", **headers}, REMOTE_ADDR="10.0.3.4")
    assert response.status_code == 200, response.content[:300]


def _probe_headers(path: str) -> list[dict[str, str]]:
    return [header for probe in _http_probes() if probe["path"] == path for header in probe.get("httpHeaders", [])]


@pytest.mark.parametrize("name", ["omlpy-web", "omlpy-worker", "omlpy-beat"])
def test_every_long_running_pod_waits_until_migrations_are_applied(name):
    init_commands = [" ".join(c["command"]) for c in _workload(name)["spec"]["template"]["spec"]["initContainers"]]
    assert any(re.search(r"until python manage\.py migrate --check\b", command) for command in init_commands)


def test_migrations_run_as_a_job():
    assert _workload("omlpy-migrate")["kind"] == "Job"
    assert " ".join(_workload("omlpy-migrate")["spec"]["template"]["spec"]["containers"][0]["command"]) == (
        "python manage.py migrate --noinput"
    )


def test_only_one_beat_ever_runs():
    beat = _workload("omlpy-beat")["spec"]
    assert beat["replicas"] == 1
    assert beat["strategy"]["type"] == "Recreate"


def test_worker_grace_period_outlasts_a_sweep_and_the_longest_task():
    grace = _workload("omlpy-worker")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > int(_configmap()["CELERY_TASK_TIME_LIMIT"]) + settings.JOBS_POLL_LEASE


def test_every_pod_runs_the_one_image_kustomize_overrides():
    containers = [c for key, value in _walk(RESOURCES) if key in {"containers", "initContainers"} for c in value]
    images = {container["image"] for container in containers}
    assert images == {IMAGE}
    overrides = [image["name"] for image in MANIFESTS["kustomization.yaml"][0]["images"]]
    assert overrides == [IMAGE.split(":")[0]]


def test_kustomization_lists_every_manifest_but_the_secret_example():
    listed = set(MANIFESTS["kustomization.yaml"][0]["resources"])
    assert listed == set(MANIFESTS) - {"kustomization.yaml", "secret.example.yaml"}


def test_manifests_name_no_namespace():
    assert [r["metadata"]["name"] for r in RESOURCES if "namespace" in r["metadata"]] == []


def test_every_setting_the_manifests_set_is_a_documented_setting():
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), flags=re.MULTILINE))
    secret = next(r for r in RESOURCES if r["kind"] == "Secret")["stringData"]
    assert sorted(set(_configmap()) - documented) == []
    assert sorted(set(secret) - documented) == []
