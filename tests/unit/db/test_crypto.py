"""Secrets stored in the database: encrypted with TGFLEET_SECRET_KEY, and a wrong key says so."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tgfleet.db.crypto import (
    SecretDecryptError,
    decrypt_secret,
    encrypt_secret,
    token_fingerprint,
)
from tgfleet.platform.settings import Settings

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"
OTHER_KEY = "b3RoZXItdW5pdC1zZWNyZXQta2V5LTMyLWJ5dGVzISE="


def test_a_secret_round_trips_and_is_not_stored_in_clear(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    stored = encrypt_secret(settings, TOKEN)
    assert TOKEN.encode() not in stored
    assert decrypt_secret(settings, stored) == TOKEN.encode()
    assert decrypt_secret(settings, memoryview(stored)) == TOKEN.encode()  # bytea from psycopg2


def test_the_wrong_key_is_named_as_the_likely_cause(
    make_settings: Callable[..., Settings],
) -> None:
    stored = encrypt_secret(make_settings(), TOKEN)
    with pytest.raises(SecretDecryptError, match="is TGFLEET_SECRET_KEY the key it was written"):
        decrypt_secret(make_settings(TGFLEET_SECRET_KEY=OTHER_KEY), stored)


def test_a_token_fingerprint_is_stable_keyed_and_reveals_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    fingerprint = token_fingerprint(settings, TOKEN)
    assert fingerprint == token_fingerprint(settings, TOKEN)
    assert len(fingerprint) == 32 and TOKEN.split(":")[0] not in fingerprint
    assert fingerprint != token_fingerprint(make_settings(TGFLEET_SECRET_KEY=OTHER_KEY), TOKEN)
    assert fingerprint != token_fingerprint(settings, TOKEN + "x")
