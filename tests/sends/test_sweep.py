"""The sweep's queue delay on a real Redis: a busy queue is told apart from lost tasks."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import redis

from tgfleet.platform.names import SEND_METRICS
from tgfleet.platform.settings import Settings
from tgfleet.sends.sweep import QueueDelay


def test_queue_delay_tells_a_busy_queue_from_lost_tasks(migrated: Settings) -> None:
    client = redis.Redis.from_url(migrated.redis_url)
    fake_sender: Any = SimpleNamespace(redis=client)
    delay = QueueDelay()
    client.delete("sends")
    try:
        # Given 100 tasks waiting: no send rate known yet -> no verdict (no sweep)
        client.rpush("sends", *["task"] * 100)
        assert delay.estimate(fake_sender) is None
        # When senders get through 50 messages in about 0.2 s
        client.hincrby(SEND_METRICS, "sent", 50)
        time.sleep(0.2)
        # Then a task waits about 2 x 100 / 250 per s in the queue: rows are late, not lost
        estimate = delay.estimate(fake_sender)
        assert estimate is not None and 0.3 < estimate < 1.5
        # And an empty queue means no delay at all
        client.delete("sends")
        assert delay.estimate(fake_sender) == 0.0
    finally:
        client.delete("sends")
