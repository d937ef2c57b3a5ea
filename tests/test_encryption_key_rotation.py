"""`manage.py rotate_encryption_keys` moves every stored secret to the first key, or changes nothing."""

from __future__ import annotations

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from jobs.models import Connection
from jobs.services.jobs import connection_save

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
UNKNOWN_KEY = Fernet.generate_key().decode()


def _connection(name: str, password: str) -> Connection:
    return connection_save(name=name, base_url=f"https://{name}.example.com", username="OMLUSER", password=password)


def _stored(pk: int) -> str:
    return Connection.objects.values_list("password_encrypted", flat=True).get(pk=pk)


def _rotate(*args: str) -> str:
    out = StringIO()
    call_command("rotate_encryption_keys", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_rotation_moves_passwords_to_the_first_key_so_the_old_key_can_be_removed():
    with override_settings(ENCRYPTION_KEYS=[KEY_A]):
        prod = _connection("prod", "prod-password")
        test = _connection("test", "test-password")
    before = {pk: _stored(pk) for pk in (prod.pk, test.pk)}

    with override_settings(ENCRYPTION_KEYS=[KEY_B, KEY_A]):
        output = _rotate()
    assert "Re-encrypted 2 secret(s)" in output
    assert "2 under key 2" in output

    with override_settings(ENCRYPTION_KEYS=[KEY_B]):
        assert Connection.objects.get(pk=prod.pk).get_password() == "prod-password"
        assert Connection.objects.get(pk=test.pk).get_password() == "test-password"
    for pk, ciphertext in before.items():
        assert _stored(pk) != ciphertext
        Fernet(KEY_B).decrypt(_stored(pk).encode())  # readable with the new key alone


@pytest.mark.django_db
def test_a_dry_run_says_what_it_would_do_and_changes_nothing():
    with override_settings(ENCRYPTION_KEYS=[KEY_A]):
        prod = _connection("prod", "prod-password")
    before = _stored(prod.pk)

    with override_settings(ENCRYPTION_KEYS=[KEY_B, KEY_A]):
        output = _rotate("--dry-run")
    assert "Would re-encrypt 1 secret(s)" in output
    assert "1 under key 2" in output
    assert _stored(prod.pk) == before


@pytest.mark.django_db
def test_a_password_no_key_decrypts_fails_the_rotation_naming_its_row_and_nothing_changes():
    with override_settings(ENCRYPTION_KEYS=[KEY_A]):
        readable = _connection("readable", "readable-password")
        lost = _connection("lost", "placeholder")
    Connection.objects.filter(pk=lost.pk).update(
        password_encrypted=Fernet(UNKNOWN_KEY).encrypt(b"lost-password").decode()
    )
    before = {pk: _stored(pk) for pk in (readable.pk, lost.pk)}

    with override_settings(ENCRYPTION_KEYS=[KEY_B, KEY_A]), pytest.raises(CommandError) as failure:
        _rotate()
    message = str(failure.value)
    assert f"jobs.Connection id={lost.pk} ('lost')" in message
    assert "'readable'" not in message
    assert "Nothing was changed" in message
    assert {pk: _stored(pk) for pk in before} == before


@pytest.mark.django_db
def test_rotation_with_nothing_stored_reports_zero():
    with override_settings(ENCRYPTION_KEYS=[KEY_B, KEY_A]):
        assert "Re-encrypted 0 secret(s)" in _rotate()
