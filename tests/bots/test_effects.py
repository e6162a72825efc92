"""A handler's effects written on real PostgreSQL and Redis: a send with a time waits,
stored, and is not enqueued; the others are enqueued after the commit: plain sends wake
the bot's ready-sends task, once for any number of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy import select

from tests.support.sends import bot_id, queued_tasks
from tgfleet.bots.effects import Effects
from tgfleet.db import Outbox, OutboxStatus, session_scope
from tgfleet.db.prepared import execute_batch
from tgfleet.platform.settings import Settings
from tgfleet.sends import wake

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
    # Then the one for now is queued and its bot's ready-sends task woken; the other
    # waits for its time, stored
    with session_scope(migrated, bot_id=bot_id) as s:
        rows = {r.text: r for r in s.scalars(select(Outbox).where(Outbox.bot_id == bot_id))}
    assert rows["now"].status is OutboxStatus.QUEUED
    assert rows["tomorrow"].status is OutboxStatus.SCHEDULED
    assert rows["tomorrow"].next_attempt_at == at
    [task] = queued_tasks(migrated)
    assert (task["task"], task["kwargs"]) == ("tgfleet.sends.deliver_ready", {"bot_id": bot_id})


def test_replies_of_many_runs_wake_one_task_and_the_rest_their_own(
    migrated: Settings, bot_id: int
) -> None:
    # Given three handler runs: two reply to users, one edits a message
    runs = [Effects(bot_id) for _ in range(3)]
    runs[0].queue(42, "hi 42")
    runs[1].queue(43, "hi 43")
    runs[2].edit(43, 7, "edited", None)
    # When each is written and committed in turn
    for effects in runs:
        with session_scope(migrated, bot_id=bot_id) as s:
            effects.written(s, execute_batch(s, effects.calls()))
    # Then the replies woke one ready-sends task (the second found it pending and was
    # counted on its flag), and the edit has a deliver task of its own
    tasks = queued_tasks(migrated)
    assert sorted(str(t["task"]) for t in tasks) == [
        "tgfleet.sends.deliver",
        "tgfleet.sends.deliver_ready",
    ]
    flag = redis.Redis.from_url(migrated.redis_url).get(wake.flag_key(bot_id))
    assert flag == b"1"
