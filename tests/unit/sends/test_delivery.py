"""The random_id a row is sent with: the same on every retry (Telegram drops a repeat),
different for every row and bot, and unguessable without the secret key."""

from __future__ import annotations

from collections.abc import Callable

from tgfleet.platform.settings import Settings
from tgfleet.sends.delivery import random_id_for


def test_a_row_keeps_its_random_id_across_retries(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    assert random_id_for(settings, 42, 9) == random_id_for(settings, 42, 9)


def test_random_ids_differ_per_row_bot_and_key(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    other_key = make_settings(TGFLEET_SECRET_KEY="b3RoZXItdW5pdC1zZWNyZXQta2V5LTMyLWJ5dGVzISE=")
    ids = {random_id_for(settings, bot, row) for bot in (1, 2, 42) for row in range(1, 200)}
    assert len(ids) == 3 * 199
    assert random_id_for(settings, 42, 9) != random_id_for(other_key, 42, 9)


def test_a_random_id_is_a_nonzero_signed_64_bit_integer(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    ids = [random_id_for(settings, 42, row) for row in range(1, 500)]
    assert all(-(2**63) <= i < 2**63 and i != 0 for i in ids)
    assert any(i < 0 for i in ids) and any(i > 0 for i in ids)
