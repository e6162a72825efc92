"""Broadcast controls on real PostgreSQL and Redis: pause, resume and cancel move the
rows not yet sent; progress counts them."""

from __future__ import annotations

from sqlalchemy import select, update

from tests.support.sends import queued_tasks
from tgfleet.db import Outbox, OutboxStatus, session_scope
from tgfleet.platform.settings import Settings
from tgfleet.sends import broadcasts
from tgfleet.sends.cli import broadcast_line, queue_broadcast
from tgfleet.sends.delivery import BLOCKED_REASON


def _statuses(settings: Settings, bot_id: int) -> dict[int, OutboxStatus]:
    with session_scope(settings, bot_id=bot_id) as s:
        rows = s.scalars(select(Outbox).where(Outbox.bot_id == bot_id))
        return {r.chat_id: r.status for r in rows}


def test_a_broadcast_is_paused_resumed_and_cancelled_row_by_row(
    migrated: Settings, bot_id: int
) -> None:
    # Given a broadcast to 6 chats: one sent, one failed because the user blocked the bot
    assert queue_broadcast(migrated, bot_id, [1, 2, 3, 4, 5, 6], "news", 5) == 6
    with session_scope(migrated, bot_id=bot_id) as s:
        s.execute(
            update(Outbox)
            .where(Outbox.bot_id == bot_id, Outbox.chat_id == 1)
            .values(status=OutboxStatus.SENT, sent_at=Outbox.created_at)
        )
        s.execute(
            update(Outbox)
            .where(Outbox.bot_id == bot_id, Outbox.chat_id == 2)
            .values(status=OutboxStatus.FAILED, last_error=BLOCKED_REASON)
        )
    # When it is paused
    with session_scope(migrated, bot_id=bot_id) as s:
        assert broadcasts.pause(s, bot_id, 5) == 4
        now = broadcasts.progress(s, bot_id, 5)
    # Then the 4 not yet sent are held, and progress says so
    assert _statuses(migrated, bot_id) == {
        1: OutboxStatus.SENT,
        2: OutboxStatus.FAILED,
        **{chat: OutboxStatus.PAUSED for chat in (3, 4, 5, 6)},
    }
    assert (now.total, now.pending, now.blocked, now.done) == (6, 4, 1, False)
    line = broadcast_line(5, now)
    assert line.startswith("broadcast 5: 1/6 delivered, 1 failed (1 blocked the bot), 4 to go")
    assert "4 paused" in line
    # When it is resumed
    before = len(queued_tasks(migrated))
    with session_scope(migrated, bot_id=bot_id) as s:
        assert broadcasts.resume(s, bot_id, 5) == 4
    # Then they are queued and enqueued again (one batch), now
    assert len(queued_tasks(migrated)) == before + 1
    assert queued_tasks(migrated)[0]["task"] == "tgfleet.sends.deliver_batch"
    # When it is cancelled
    with session_scope(migrated, bot_id=bot_id) as s:
        assert broadcasts.cancel(s, bot_id, 5) == 4
        assert broadcasts.resume(s, bot_id, 5) == 0
        done = broadcasts.progress(s, bot_id, 5)
    # Then nothing is left to send, and what was sent stays sent
    assert done.done and done.eta_s == 0.0
    assert _statuses(migrated, bot_id)[1] is OutboxStatus.SENT
    assert broadcast_line(5, done).endswith("4 cancelled, 0.0/s, done")
