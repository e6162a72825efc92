"""A handler's effects written on real PostgreSQL and Redis: a send with a time waits,
stored, and is not enqueued; the others are enqueued after the commit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from tests.support.sends import bot_id, queued_tasks
from tgfleet.bots.effects import Effects
from tgfleet.db import Outbox, OutboxStatus, session_scope
from tgfleet.db.prepared import execute_batch
from tgfleet.platform.settings import Settings

__all__ = ["bot_id"]


def test_a_handler_s_send_with_a_time_is_stored_scheduled_not_enqueued(
    migrated: Settings, bot_id: int
) -> None:
    # Given a handler run that sends one message now and one tomorrow (ctx.send(at=...))
    at = datetime.now(UTC) + timedelta(days=1)
    effects = Effects(bot_id)
    effects.queue(42, "now")
    effects.queue(43, "tomorrow", at=at)
    # When its effects are written and committed
    with session_scope(migrated, bot_id=bot_id) as s:
        effects.written(s, execute_batch(s, effects.calls()))
    # Then the one for now is enqueued; the other waits for its time, stored
    with session_scope(migrated, bot_id=bot_id) as s:
        rows = {r.text: r for r in s.scalars(select(Outbox).where(Outbox.bot_id == bot_id))}
    assert rows["now"].status is OutboxStatus.QUEUED
    assert rows["tomorrow"].status is OutboxStatus.SCHEDULED
    assert rows["tomorrow"].next_attempt_at == at
    tasks = queued_tasks(migrated)
    assert [t["kwargs"]["outbox_id"] for t in tasks] == [rows["now"].id]  # type: ignore[index]
