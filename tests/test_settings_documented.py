"""Every variable the settings read is in .env.example and in README's Configuration table, and nothing else is;
the deployment's own variables are read where .env.example says they are."""

from __future__ import annotations

import re

from tests.stack import ROOT

SETTINGS = (ROOT / "omlpy_dashboard" / "settings.py").read_text()
EXAMPLE = (ROOT / ".env.example").read_text()
README = (ROOT / "README.md").read_text()

LIBRARY_SECTION = "# --- Read by the HTTP client to OML"
DEPLOYMENT_SECTION = "# --- Deployment:"


def _names(text: str) -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))


def _settings_names() -> set[str]:
    return set(re.findall(r'env\.(?:str|bool|int|float|list|db|url|json)\(\s*"([A-Z][A-Z0-9_]*)"', SETTINGS))


def _readme_section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_settings_read_exactly_the_variables_of_env_example():
    django_part = EXAMPLE.split(LIBRARY_SECTION, 1)[0]
    assert _settings_names(), "no env.<type>(NAME) call found: the pattern no longer matches settings.py"
    assert _settings_names() == _names(django_part)


def test_every_setting_is_in_the_readme_configuration_table():
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", _readme_section("Configuration")))
    missing = sorted(_settings_names() - documented)
    assert missing == [], f"add these to README's Configuration table: {missing}"


def test_every_variable_read_outside_the_settings_is_documented_and_really_read_there():
    library = _names(EXAMPLE.split(LIBRARY_SECTION, 1)[1].split(DEPLOYMENT_SECTION, 1)[0])
    deployment = _names(EXAMPLE.split(DEPLOYMENT_SECTION, 1)[1])
    assert library
    assert deployment
    readme = _readme_section("Configuration") + _readme_section("Deploy")
    assert sorted(name for name in library | deployment if f"`{name}`" not in readme) == []
    readers = "".join(
        (ROOT / path).read_text()
        for path in ("docker-compose.yml", "deploy/gunicorn.conf.py", "deploy/caddy/Caddyfile", "deploy/init-env.py")
    )
    assert sorted(name for name in deployment if name not in readers) == []
