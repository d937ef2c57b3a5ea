"""Bad configuration stops the start with a message that says what to fix, never a half-working site."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.stack import ROOT

GOOD_KEY = "k3Vq9-production-signing-key-2bX7rT1mZ8pL4wQ6nH0sD5fJ9cY3vB1"
GOOD_FERNET = "9SZTblygt3xArpISV3_IM3qAVszu5ZAdbgCv08a3tEw="


def start(**overrides: str) -> subprocess.CompletedProcess:
    """`manage.py check` in production mode, with these variables changed."""
    env = {
        **{name: value for name, value in os.environ.items() if name not in ("SECRET_KEY", "ENCRYPTION_KEYS")},
        "DEBUG": "false",
        "SECRET_KEY": GOOD_KEY,
        "ENCRYPTION_KEYS": GOOD_FERNET,
        **overrides,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_production_start_with_good_secrets_passes_the_checks():
    done = start()
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY must be set when DEBUG is off"),
        ({"SECRET_KEY": "short-but-secret"}, "it has 16 characters; at least 50 are needed"),
        ({"SECRET_KEY": "change-me-" + "x" * 60}, "it is a placeholder value"),
        ({"SECRET_KEY": "django-insecure-" + "abcdefgh" * 6}, "generated for development"),
        ({"SECRET_KEY": "ab" * 40}, "fewer than 5 distinct characters"),
        ({"ENCRYPTION_KEYS": ""}, "ENCRYPTION_KEYS must be set when DEBUG is off"),
        ({"ENCRYPTION_KEYS": f"{GOOD_FERNET},not-a-key"}, "ENCRYPTION_KEYS: key 2 is not a Fernet key"),
        ({"JOBS_POLL_STRATEGY": "sometimes"}, "JOBS_POLL_STRATEGY must be learned, backoff or fixed"),
        ({"BEHIND_TLS_PROXY": "true", "TRUSTED_PROXIES": ""}, "TRUSTED_PROXIES"),
        ({"TRUSTED_PROXIES": "10.0.0.0/33"}, "10.0.0.0/33"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"OMLENGINE_SANDBOX": "maybe"}, "OMLENGINE_SANDBOX must be on or off"),
        ({"OMLENGINE_TOKEN_THROTTLE_SECONDS": "0"}, "The OMLENGINE_TOKEN_THROTTLE_* settings must be positive"),
        ({"CELERY_TASK_SOFT_TIME_LIMIT": "400"}, "CELERY_TASK_SOFT_TIME_LIMIT must be below CELERY_TASK_TIME_LIMIT"),
        ({"API_TOKEN_DEFAULT_DAYS": "400"}, "API_TOKEN_DEFAULT_DAYS must be between 1 and API_TOKEN_MAX_DAYS"),
        ({"API_TOKEN_MAX_DAYS": "0"}, "API_TOKEN_MAX_DAYS must be between 1 and 3650 days"),
        ({"RETENTION_RESULT_DAYS": "400", "RETENTION_JOB_DAYS": "365"}, "RETENTION_RESULT_DAYS must be between 1"),
        ({"RETENTION_JOB_DAYS": "-1"}, "RETENTION_RESULT_DAYS and RETENTION_JOB_DAYS must be 0"),
        ({"RETENTION_PURGE_BATCH": "0"}, "RETENTION_PURGE_BATCH at least 1"),
    ],
)
def test_a_bad_setting_stops_the_start_naming_what_to_fix(overrides, message):
    done = start(**overrides)
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr
    assert message in done.stderr, done.stderr[-1500:]
