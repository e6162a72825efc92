"""The random_id a row is sent with: the same on every retry (Telegram drops a repeat),
different for every row and bot, and unguessable without the secret key; and a claimed
row, made from the claim's result without the ORM's __init__."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import inspect

from tgfleet.db import Outbox, OutboxStatus
from tgfleet.platform.settings import Settings
from tgfleet.sends.delivery import _KEYS, _outbox, random_id_for


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


def test_a_claimed_row_has_every_value_and_is_in_no_session() -> None:
    # Given what the claim returned for a row: every column, its status as text
    values = {key: None for key in _KEYS} | {
        "bot_id": 5,
        "id": 7,
        "chat_id": 9,
        "text": "hello",
        "status": "sending",
        "attempts": 2,
        "media": {"photo": [1, 2, "eA=="]},
        "created_at": datetime(2026, 12, 8, tzinfo=UTC),
    }
    found = namedtuple("Found", _KEYS)(**values)
    # When it becomes an Outbox
    row = _outbox(found)  # type: ignore[arg-type]
    # Then it reads as Outbox(**values) would, its status an OutboxStatus
    made = Outbox(**values)
    for key in _KEYS:
        assert getattr(row, key) == getattr(made, key), key
    assert row.status is OutboxStatus.SENDING
    # And it belongs to no session, and a change to it is an ordinary attribute change
    assert inspect(row).transient
    row.status = OutboxStatus.SENT
    assert row.status is OutboxStatus.SENT
