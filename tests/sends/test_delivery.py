"""Delivery's bookkeeping on real PostgreSQL: a stable random_id per row, and claims that
are won once until their lease expires."""

from __future__ import annotations

from sqlalchemy import insert

from tgfleet.db import Outbox, OutboxStatus, session_scope
from tgfleet.platform.settings import Settings
from tgfleet.sends.delivery import claim, mark_sent, random_id_for
from tgfleet.sends.outbox import answer_row, queue_message


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


def test_a_claimed_answer_carries_its_call_and_is_marked_sent_once(
    migrated: Settings, bot_id: int
) -> None:
    # Given a button press's answer in the outbox (as a handler's ctx.answer leaves it)
    values = answer_row(bot_id, 42, 987654321, "Picked 1", alert=True)
    with session_scope(migrated, bot_id=bot_id) as s:
        row_id = s.execute(insert(Outbox).values(**values).returning(Outbox.id)).scalar_one()
    # When a sender claims it in a transaction that sends its context with the claim
    with session_scope(migrated, bot_id=bot_id, lazy_context=True) as s:
        claimed = claim(s, migrated, bot_id, row_id)
    # Then the claimed row is the whole row, as the request is built from it
    assert claimed is not None and claimed.status is OutboxStatus.SENDING
    assert (claimed.op, claimed.target_id, claimed.text) == ("answer", 987654321, "Picked 1")
    assert claimed.options == {"alert": True, "url": None}
    assert claimed.random_id == random_id_for(migrated, bot_id, row_id)
    # And once it is marked sent, nothing claims it again
    with session_scope(migrated, bot_id=bot_id, lazy_context=True) as s:
        mark_sent(s, claimed, None)
    with session_scope(migrated, bot_id=bot_id) as s:
        stored = s.get(Outbox, (bot_id, row_id))
        assert stored is not None and stored.status is OutboxStatus.SENT
        assert stored.sent_at is not None and stored.updated_at >= claimed.updated_at
        assert claim(s, migrated.model_copy(update={"send_lease_s": 0.0}), bot_id, row_id) is None
