"""The send pacer against a real Redis: bursts, even spacing, chat slots, booked time."""

from __future__ import annotations

import itertools
import time
import uuid

import pytest
import redis

from tgfleet.platform.settings import Settings
from tgfleet.sends.pacing import BOT_BURST, SendPacer, Stage
from tgfleet.sends.ratelimit import BOT_BURST_S, SAFETY, ChatKind, Limits

LIMITS = Limits(bot_per_s=30.0, chat_per_s=1.0, chat_burst=3, group_per_min=20.0)


@pytest.fixture
def pacer(settings: Settings) -> SendPacer:
    client = redis.Redis.from_url(settings.redis_url)
    return SendPacer(client, prefix=f"test:pace:{uuid.uuid4().hex}")


def test_a_bot_bursts_a_little_then_gets_evenly_spaced_slots(pacer: SendPacer) -> None:
    # Given 40 messages of one bot to 40 different chats, reserved at once
    slots, asked = [], []
    for chat in range(40):
        asked.append(time.monotonic())
        slots.append(pacer.reserve(1, chat, ChatKind.PRIVATE, LIMITS, Stage.NONE))
    # Then the first BOT_BURST go now and the rest get slots one interval apart (in time:
    # each wait counts from its own call, which a busy machine may make late)
    assert all(s.stage is Stage.BOTH for s in slots)
    assert [s.wait for s in slots[:BOT_BURST]] == [0.0] * BOT_BURST
    interval = 1 / (30.0 * SAFETY)
    later = [t + s.wait for t, s in zip(asked, slots, strict=True)][BOT_BURST:]
    gaps = [b - a for a, b in itertools.pairwise(later)]
    assert all(abs(gap - interval) < 0.01 for gap in gaps), gaps
    assert slots[-1].wait == pytest.approx((40 - BOT_BURST) * interval, abs=0.05)
    # (the theoretical arrival time runs one burst ahead of the last slot handed out)
    assert pacer.booked_ahead(1) == pytest.approx(slots[-1].wait + BOT_BURST * interval, abs=0.05)
    assert pacer.booked_ahead(2) == 0.0


def test_one_chat_gets_its_burst_then_chat_slots_without_bot_slots(pacer: SendPacer) -> None:
    slots = [pacer.reserve(1, 99, ChatKind.PRIVATE, LIMITS, Stage.NONE) for _ in range(6)]
    # The chat's burst of 3 goes now; later messages wait for chat slots ~1 s apart, and
    # they book no bot slot yet (other chats of the bot are not held up behind them)
    assert [s.wait for s in slots[:3]] == [0.0] * 3
    assert [s.stage for s in slots[3:]] == [Stage.CHAT] * 3
    assert [round(s.wait, 1) for s in slots[3:]] == [round(n / SAFETY, 1) for n in (1, 2, 3)]
    assert pacer.booked_ahead(1) < 0.2
    # A task coming back with its chat slot then books a bot slot
    assert pacer.reserve(1, 99, ChatKind.PRIVATE, LIMITS, Stage.CHAT).stage is Stage.BOTH


def test_a_bot_s_batches_get_slots_one_after_another(pacer: SendPacer) -> None:
    # Given three batches of 50 messages of one bot, reserved at once
    waits = [pacer.reserve_batch(1, 50, LIMITS) for _ in range(3)]
    # Then the first starts now and each next one when the one before it is half a
    # second from done (the limiter's burst), at the bot's rate
    interval = 1 / (30.0 * SAFETY)
    assert waits[0] == 0.0
    assert waits[1] == pytest.approx(50 * interval - BOT_BURST_S, abs=0.05)
    assert waits[2] == pytest.approx(100 * interval - BOT_BURST_S, abs=0.05)
    # And the bot counts as booked that far ahead (the sweep leaves its rows alone),
    # while single sends still get slots of their own at once
    assert pacer.booked_ahead(1) == pytest.approx(150 * interval, abs=0.05)
    assert pacer.reserve(1, 5, ChatKind.PRIVATE, LIMITS, Stage.NONE).wait == 0.0
