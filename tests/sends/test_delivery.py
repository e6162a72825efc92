"""Delivery's bookkeeping on real PostgreSQL: a stable random_id per row, and claims that
are won once until their lease expires."""

from __future__ import annotations

from tgfleet.db import OutboxStatus, session_scope
from tgfleet.platform.settings import Settings
from tgfleet.sends.delivery import claim, random_id_for
from tgfleet.sends.outbox import queue_message


def test_random_id_is_stable_per_row_and_distinct_between_rows(migrated: Settings) -> None:
    first = random_id_for(migrated, 1, 2)
    assert first == random_id_for(migrated, 1, 2)
    assert first != random_id_for(migrated, 1, 3) != random_id_for(migrated, 2, 2)
    assert -(2**63) <= first < 2**63 and first != 0


def test_a_claim_is_won_once_until_its_lease_expires(migrated: Settings, bot_id: int) -> None:
    with session_scope(migrated, bot_id=bot_id) as s:
        row = queue_message(s, bot_id, 42, "hi")
    results = []
    for _ in range(2):
        with session_scope(migrated, bot_id=bot_id) as s:
            results.append(claim(s, migrated, bot_id, row.id) is not None)
    assert results == [True, False]
    expired = migrated.model_copy(update={"send_lease_s": 0.0})
    with session_scope(migrated, bot_id=bot_id) as s:
        stored = claim(s, expired, bot_id, row.id)
        assert stored is not None and stored.status is OutboxStatus.SENDING
        assert stored.random_id == random_id_for(migrated, bot_id, row.id)
