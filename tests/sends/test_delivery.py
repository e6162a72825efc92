"""Delivery's bookkeeping on real PostgreSQL: a stable random_id per row, claims that
are won once until their lease expires, and what the sweep counts as lost."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, insert, select, update

from tgfleet.db import Outbox, OutboxStatus, session_scope
from tgfleet.platform.settings import Settings
from tgfleet.sends.delivery import (
    claim,
    claim_many,
    mark_sent,
    mark_sent_many,
    overdue,
    random_id_for,
)
from tgfleet.sends.outbox import answer_row, edit_row, queue_message


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


def test_a_batch_claims_its_plain_sends_once_and_marks_them_sent_in_one_go(
    migrated: Settings, bot_id: int
) -> None:
    # Given three sends, one already sent, an upload, an edit and a two-part text
    with session_scope(migrated, bot_id=bot_id) as s:
        plain = [queue_message(s, bot_id, 100 + n, f"hi {n}").id for n in range(3)]
        upload = queue_message(s, bot_id, 104, "file", media={"upload": {"path": "/tmp/x"}}).id
        edit = s.execute(
            insert(Outbox).values(**edit_row(bot_id, 105, 9, "new")).returning(Outbox.id)
        ).scalar_one()
        long = queue_message(s, bot_id, 106, "x" * 5000)
    with session_scope(migrated, bot_id=bot_id) as s:
        done = claim(s, migrated, bot_id, plain[2])
        assert done is not None
        mark_sent(s, done, 1)
    # When a batch claims them all
    wanted = [*plain, upload, edit, long.id]
    with session_scope(migrated, bot_id=bot_id, lazy_context=True) as s:
        rows = claim_many(s, migrated, bot_id, wanted)
    # Then it gets the plain sends still to do, each with its random_id, in id order
    assert [r.id for r in rows] == [plain[0], plain[1], long.id]
    assert all(r.status is OutboxStatus.SENDING for r in rows)
    assert [r.random_id for r in rows] == [random_id_for(migrated, bot_id, r.id) for r in rows]
    # And a second batch gets none of them while the lease lasts
    with session_scope(migrated, bot_id=bot_id) as s:
        assert claim_many(s, migrated, bot_id, wanted) == []
    # When they are marked sent together
    with session_scope(migrated, bot_id=bot_id, lazy_context=True) as s:
        mark_sent_many(s, [(row, 500 + n) for n, row in enumerate(rows)])
    # Then each is sent with its message id, and the long text's second part is released
    with session_scope(migrated, bot_id=bot_id) as s:
        stored = {r.id: r for r in s.scalars(select(Outbox).where(Outbox.bot_id == bot_id))}
    assert [(stored[r.id].status, stored[r.id].tg_message_id) for r in rows] == [
        (OutboxStatus.SENT, 500),
        (OutboxStatus.SENT, 501),
        (OutboxStatus.SENT, 502),
    ]
    [second] = [r for r in stored.values() if r.dedupe_key and r.dedupe_key.endswith("#part1")]
    assert second.status is OutboxStatus.QUEUED and second.next_attempt_at.year < 9999
    assert stored[upload].status is OutboxStatus.QUEUED
    assert stored[edit].status is OutboxStatus.QUEUED


def test_the_sweep_sees_a_lost_reply_not_one_waiting_behind_its_chat_s_first(
    migrated: Settings, bot_id: int
) -> None:
    def an_hour_overdue(chat: int, text: str) -> int:
        with session_scope(migrated, bot_id=bot_id) as s:
            outbox_id = queue_message(s, bot_id, chat, text).id
            s.execute(
                update(Outbox)
                .where(Outbox.bot_id == bot_id, Outbox.id == outbox_id)
                .values(next_attempt_at=func.now() - timedelta(hours=1))
            )
        return outbox_id

    def sweep() -> tuple[list[tuple[int, int]], list[int]]:
        with session_scope(migrated, role="admin") as s:
            return overdue(s, migrated, [bot_id])

    # Given two replies to chat 42 an hour overdue, the first of them retrying
    first, second = an_hour_overdue(42, "first"), an_hour_overdue(42, "second")
    with session_scope(migrated, bot_id=bot_id) as s:
        s.execute(
            update(Outbox)
            .where(Outbox.bot_id == bot_id, Outbox.id == first)
            .values(status=OutboxStatus.RETRYING)
        )
    # When the sweep looks for what was lost
    # Then the retrying one gets a deliver task, and the second is not lost: it waits
    assert sweep() == ([(first, bot_id)], [])
    # And a reply to chat 43 that lost its task is its bot's ready-sends task's again
    other = an_hour_overdue(43, "other")
    assert sweep() == ([], [bot_id])
    with session_scope(migrated, bot_id=bot_id) as s:
        found = s.execute(select(Outbox.id, Outbox.status).where(Outbox.bot_id == bot_id))
        status = {outbox_id: value for outbox_id, value in found}
    assert status == {
        first: OutboxStatus.RETRYING,
        second: OutboxStatus.QUEUED,
        other: OutboxStatus.QUEUED,
    }
