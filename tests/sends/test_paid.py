"""Paid broadcast tokens and Stars books, in a real Redis (``tgfleet.sends.paid``)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis

from tgfleet.db import fleet
from tgfleet.platform.settings import Settings
from tgfleet.sends.paid import PaidBudget, PaidConfigError, StarsLedger
from tgfleet.sends.ratelimit import BOT_BURST_S, SAFETY, ChatKind, Limits, RateLimiter

LIMITS = Limits(bot_per_s=30, chat_per_s=1, chat_burst=3, group_per_min=20)


@pytest.fixture
def books(settings: Settings) -> Iterator[tuple[RateLimiter, StarsLedger]]:
    client = redis.Redis.from_url(settings.redis_url)
    prefix = f"test:paid:{time.monotonic_ns()}"
    yield RateLimiter(client, prefix=f"{prefix}:rl"), StarsLedger(client, prefix=f"{prefix}:st")
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


def chats(count: int, start: int = 1000) -> list[tuple[int, ChatKind]]:
    return [(chat, ChatKind.PRIVATE) for chat in range(start, start + count)]


def test_a_paid_round_is_free_while_the_bot_s_bucket_lasts_then_paid(
    books: tuple[RateLimiter, StarsLedger],
) -> None:
    limiter, ledger = books
    budget = PaidBudget(per_broadcast=5.0, per_day=100.0)
    # When an idle bot asks for 40 messages of broadcast 7 at once
    grant = limiter.acquire_paid(1, chats(40), LIMITS, 1000, ledger.books(1, 7, budget))
    # Then the bucket's half second is free, the rest paid, all granted
    free = int(30 * SAFETY * BOT_BURST_S)
    assert all(grant.granted)
    assert grant.paid == (False,) * free + (True,) * (40 - free)
    # And the paid ones are booked at 0.1 Star each on the broadcast and the day
    spent = ledger.spent(1, 7)
    assert spent.broadcast == spent.today == pytest.approx((40 - free) * 0.1)
    assert not grant.budget_out


def test_the_budget_caps_what_is_paid_and_the_rest_waits_for_free_tokens(
    books: tuple[RateLimiter, StarsLedger],
) -> None:
    limiter, ledger = books
    budget = PaidBudget(per_broadcast=0.5, per_day=100.0)
    grant = limiter.acquire_paid(2, chats(40), LIMITS, 1000, ledger.books(2, 8, budget))
    # Then 5 are paid (0.5 Star), the rest wait for the bot's own bucket
    assert sum(grant.paid) == 5 and sum(grant.granted) == int(30 * SAFETY * BOT_BURST_S) + 5
    assert grant.budget_out and 0 < grant.bot_wait < 0.1
    assert ledger.spent(2, 8).broadcast == pytest.approx(0.5)
    assert not ledger.usable(2, 8, budget)
    # and another broadcast of the bot has its own budget, the day's is shared
    assert ledger.usable(2, 9, budget)
    assert not ledger.usable(2, 9, PaidBudget(per_broadcast=5, per_day=0.5))


def test_refunds_give_back_and_out_of_stars_stops_paid_sends(
    books: tuple[RateLimiter, StarsLedger],
) -> None:
    limiter, ledger = books
    budget = PaidBudget(per_broadcast=1.0, per_day=1.0)
    limiter.acquire_paid(3, chats(30), LIMITS, 1000, ledger.books(3, 1, budget))
    assert not ledger.usable(3, 1, budget)
    ledger.refund(3, 1, 4)
    assert ledger.spent(3, 1).broadcast == pytest.approx(0.6) and ledger.usable(3, 1, budget)
    ledger.out_of_stars(3, seconds=5)
    assert ledger.is_out_of_stars(3) and not ledger.usable(3, 1, budget)


def test_the_paid_ceiling_holds_even_with_budget_left(
    books: tuple[RateLimiter, StarsLedger],
) -> None:
    limiter, ledger = books
    budget = PaidBudget(per_broadcast=1000.0, per_day=1000.0)
    # With a 100 msg/s ceiling, 100 chats at once: half a second's worth is granted
    grant = limiter.acquire_paid(4, chats(100), LIMITS, 100, ledger.books(4, 1, budget))
    assert sum(grant.granted) == int(100 * SAFETY * BOT_BURST_S)
    assert not grant.budget_out and grant.bot_wait > 0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("yes", "must be an object"),
        ({"per_broadcast": 10}, "paid_broadcasts.per_day must be a positive number"),
        ({"per_broadcast": -1, "per_day": 5}, "per_broadcast must be a positive number"),
    ],
)
def test_a_bad_budget_is_refused_with_the_value(raw: object, message: str) -> None:
    with pytest.raises(PaidConfigError, match=message):
        PaidBudget.parse(raw)


def test_after_a_paid_round_free_sends_wait_until_telegram_s_bucket_has_slack_again(
    books: tuple[RateLimiter, StarsLedger],
) -> None:
    limiter, ledger = books
    budget = PaidBudget(per_broadcast=100.0, per_day=100.0)
    limiter.acquire_paid(5, chats(40), LIMITS, 1000, ledger.books(5, 1, budget))
    # Then a free send waits for a whole burst's worth, not for one token
    assert limiter.acquire(5, 1, ChatKind.PRIVATE, LIMITS) >= BOT_BURST_S


def test_an_operator_turns_paid_broadcasts_on_reads_them_and_turns_them_off(
    migrated: Settings, bot_id: int, subprocess_env: dict[str, str]
) -> None:
    def tgfleet(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "tgfleet", "bots", "paid", str(bot_id), *args]
        return subprocess.run(argv, env=subprocess_env, capture_output=True, text=True)

    # When an operator sets a budget
    shown = tgfleet("--per-broadcast", "50", "--per-day", "200")
    # Then it is the bot's setting and the command shows it with today's spend
    assert shown.returncode == 0, shown.stderr
    assert fleet.bot_settings(migrated, bot_id)["paid_broadcasts"] == {
        "per_broadcast": 50.0,
        "per_day": 200.0,
    }
    assert "up to 50 Stars a broadcast, 200 a day; 0 spent today" in shown.stdout
    # When a value is missing, it is refused, named, and nothing changes
    bad = tgfleet("--per-broadcast", "5")
    assert bad.returncode == 1 and "per_day must be a positive number" in bad.stderr
    assert fleet.bot_settings(migrated, bot_id)["paid_broadcasts"]["per_broadcast"] == 50.0
    # When it is turned off
    off = tgfleet("--off")
    assert off.returncode == 0 and "broadcasts go at the free rate" in off.stdout
    assert "paid_broadcasts" not in fleet.bot_settings(migrated, bot_id)
