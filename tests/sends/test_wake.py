"""Waking a bot's ready-sends task on real Redis: one task per bot however many wakes,
and a wake during a round is never lost."""

from __future__ import annotations

import redis

from tests.support.sends import bot_id, queued_tasks
from tgfleet.platform.settings import Settings
from tgfleet.sends import wake

__all__ = ["bot_id"]


def test_many_wakes_push_one_task_per_bot(migrated: Settings, bot_id: int) -> None:
    # Given no task pending for the bot
    # When its replies wake it three times, and another bot once
    pushed = [wake.wake([bot_id]) for _ in range(3)] + [wake.wake([bot_id + 1])]
    # Then one task was pushed for each bot, and the later wakes were counted on the flag
    assert pushed == [1, 0, 0, 1]
    tasks = queued_tasks(migrated)
    assert sorted(t["kwargs"]["bot_id"] for t in tasks) == [bot_id, bot_id + 1]  # type: ignore[index]
    assert {str(t["task"]) for t in tasks} == {"tgfleet.sends.deliver_ready"}
    client = redis.Redis.from_url(migrated.redis_url)
    assert client.get(wake.flag_key(bot_id)) == b"2"
    assert 0 < client.pttl(wake.flag_key(bot_id)) <= wake.FLAG_TTL_S * 1000
    client.delete(wake.flag_key(bot_id + 1))


def test_a_wake_during_a_round_makes_it_go_again(migrated: Settings, bot_id: int) -> None:
    client = redis.Redis.from_url(migrated.redis_url)
    # Given a task pushed for the bot
    assert wake.wake([bot_id]) == 1
    # When a reply wakes the bot while the task runs its round
    assert wake.wake([bot_id]) == 0
    # Then the round's end says go again, and keeps the flag (no second task)
    assert wake.finish(client, bot_id) is True
    assert len(queued_tasks(migrated)) == 1
    # And a round that comes back later keeps the flag past its wait
    assert wake.finish(client, bot_id, again_in=40.0) is True
    assert client.pttl(wake.flag_key(bot_id)) > 40_000
    # And a round with no wake since the one before ends the task: the next wake pushes
    # a new one
    assert wake.finish(client, bot_id) is False
    assert client.exists(wake.flag_key(bot_id)) == 0
    assert client.hget("tgfleet:metrics:sends", "ready_rounds") is not None
    assert wake.wake([bot_id]) == 1
    assert len(queued_tasks(migrated)) == 2
    client.delete(wake.flag_key(bot_id))
