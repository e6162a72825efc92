"""The Redis token-bucket limiter on a real Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from tgfleet.platform.settings import Settings
from tgfleet.sends.ratelimit import BOT_BURST_S, SAFETY, ChatKind, Limits, RateLimiter
from tgfleet.simulator.limits import FloodLimits


@pytest.fixture
def limiter(settings: Settings) -> Iterator[RateLimiter]:
    client = redis.Redis.from_url(settings.redis_url)
    prefix = f"test:rl:{time.monotonic_ns()}"
    yield RateLimiter(client, prefix=prefix)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


LIMITS = Limits(bot_per_s=30, chat_per_s=1, chat_burst=3, group_per_min=20)


def test_private_chat_burst_then_wait(limiter: RateLimiter) -> None:
    # Given a fresh chat: the burst of 3 goes through at once
    assert [limiter.acquire(1, 100, ChatKind.PRIVATE, LIMITS) for _ in range(3)] == [0, 0, 0]
    # Then the 4th must wait about one token's time, and took nothing
    wait = limiter.acquire(1, 100, ChatKind.PRIVATE, LIMITS)
    assert 0.9 < wait <= 1 / SAFETY + 0.05
    # And another chat of the same bot is not affected
    assert limiter.acquire(1, 101, ChatKind.PRIVATE, LIMITS) == 0


def test_bot_bucket_caps_a_burst_across_chats_at_half_of_telegram_s(
    limiter: RateLimiter,
) -> None:
    # Given an idle bot and 100 chats, the bot's own bucket is what limits the burst
    granted = sum(limiter.acquire(2, chat, ChatKind.PRIVATE, LIMITS) == 0 for chat in range(100))
    # Then it holds half a second of tokens: half of what Telegram's bucket holds stays
    # free for sends that were spaced out here but reach Telegram bunched together
    burst = 30 * SAFETY * BOT_BURST_S
    assert int(burst) <= granted <= int(burst) + 2
    assert granted <= FloodLimits().bot_burst / 2


def test_sustained_rate_never_exceeds_limit(limiter: RateLimiter) -> None:
    # When 4 threads hammer one bot for 1.5 s
    granted: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + 1.5

    def hammer(offset: int) -> None:
        chat = offset * 10_000
        while time.monotonic() < stop:
            chat += 1
            if limiter.acquire(3, chat, ChatKind.PRIVATE, LIMITS) == 0:
                with lock:
                    granted.append(time.monotonic())

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then no more than burst + rate * time tokens were handed out, and nearly that many
    allowed = 30 * SAFETY * BOT_BURST_S + 30 * SAFETY * 1.5
    assert allowed * 0.85 <= len(granted) <= allowed + 1


def test_group_limit_per_minute(limiter: RateLimiter) -> None:
    granted = [limiter.acquire(4, -500, ChatKind.GROUP, LIMITS) == 0 for _ in range(5)]
    assert granted == [True, True, True, False, False]
    assert limiter.acquire(4, -500, ChatKind.GROUP, LIMITS) == pytest.approx(
        60 / 20 / SAFETY, rel=0.05
    )


def test_pause_blocks_bot_everywhere_and_only_extends(limiter: RateLimiter) -> None:
    limiter.pause(5, 2.0)
    assert 1.5 < limiter.acquire(5, 1, ChatKind.PRIVATE, LIMITS) <= 2.0
    assert 1.5 < limiter.paused_for(5) <= 2.0
    limiter.pause(5, 0.1)  # a shorter pause never shortens the current one
    assert limiter.paused_for(5) > 1.5
    assert limiter.acquire(6, 1, ChatKind.PRIVATE, LIMITS) == 0  # other bots unaffected


def test_many_tokens_are_granted_in_order_while_the_bot_s_bucket_lasts(
    limiter: RateLimiter,
) -> None:
    # Given an idle bot and 30 distinct chats, asked for at once
    chats = [(chat, ChatKind.PRIVATE) for chat in range(1000, 1030)]
    grant = limiter.acquire_many(10, chats, LIMITS)
    # Then the first half second's worth is granted, the rest not, with the bot's wait
    burst = int(30 * SAFETY * BOT_BURST_S)
    assert grant.granted[:burst] == (True,) * burst
    assert not any(grant.granted[burst + 1 :])
    assert 0 < grant.bot_wait <= 1 / (30 * SAFETY) + 0.01 and grant.chat_wait == 0
    # And those tokens are gone for single sends too
    assert limiter.acquire(10, 2000, ChatKind.PRIVATE, LIMITS) > 0


def test_a_chat_without_a_token_is_skipped_and_its_wait_reported(limiter: RateLimiter) -> None:
    # Given a chat that used its burst of 3
    for _ in range(3):
        assert limiter.acquire(11, 7, ChatKind.PRIVATE, LIMITS) == 0
    # When a batch asks for it between two fresh chats and a group
    private = ChatKind.PRIVATE
    chats = [(6, private), (7, private), (8, private), (-9, ChatKind.GROUP)]
    grant = limiter.acquire_many(11, chats, LIMITS)
    # Then it alone is skipped, with the time until its next token
    assert grant.granted == (True, False, True, True)
    assert grant.bot_wait == 0
    assert grant.chat_wait == pytest.approx(1 / SAFETY, abs=0.05)


def test_a_paused_bot_gets_no_tokens_until_the_pause_ends(limiter: RateLimiter) -> None:
    limiter.pause(12, 5)
    grant = limiter.acquire_many(12, [(1, ChatKind.PRIVATE), (2, ChatKind.PRIVATE)], LIMITS)
    assert grant.granted == (False, False)
    assert 4.5 < grant.bot_wait <= 5
