"""The send path end to end: real sender workers, the simulator with Telegram's limits on,
real PostgreSQL and Redis."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.tasks.sends_support import SendWorld, migrated, send_world  # noqa: F401

pytestmark = pytest.mark.timeout(180)


def test_fleet_batch_is_delivered_exactly_once_without_flood_waits(send_world: SendWorld) -> None:
    w = send_world
    # Given 3 bots and 100 users every bot's listener has seen
    bots = [w.add_bot() for _ in range(3)]
    users = [w.add_user(f"u{i}") for i in range(100)]
    for bot in bots:
        w.listener_saw(bot["id"], [u["id"] for u in users])
    # When 1,000 messages are queued and 2 sender processes deliver them
    items = [(bots[i % 3]["id"], users[(i // 3) % 100]["id"], f"msg {i}") for i in range(1000)]
    w.queue(items)
    w.start_senders(2)
    w.wait_settled(1000, timeout=90)
    # Then every row is sent, each message arrived exactly once, and Telegram never
    # had to answer FLOOD_WAIT
    assert w.statuses() == Counter({"sent": 1000}), w.log_tail()
    expected: dict[int, Counter[str]] = {}
    for _, user_id, text in items:
        expected.setdefault(user_id, Counter())[text] += 1
    for user in users:
        assert Counter(w.received(user["id"])) == expected[user["id"]]
    stats = w.sim.stats()
    assert stats["flood_errors"] == 0
    assert stats["counters"].get("duplicate_sends", 0) == 0
