"""The simulator's Telegram-like flood limits: token buckets per chat, bot and group."""

from __future__ import annotations

from typing import Any

import pytest

from tgfleet.simulator.limits import NEEDS_STARS, FloodControl, FloodLimits


def test_private_chat_bucket_allows_a_burst_then_reports_the_wait() -> None:
    # Given 1 msg/s per private chat with a burst of 3, and 30/s per bot
    flood = FloodControl(FloodLimits(private_chat_rate=1.0, private_chat_burst=3))
    # When four messages go to one chat at the same instant
    waits = [flood.check(1, 100, now=10.0) for _ in range(4)]
    # Then three pass and the fourth must wait one second; another chat is unaffected
    assert waits == [0, 0, 0, 1]
    assert flood.check(1, 200, now=10.0) == 0
    assert flood.check(1, 100, now=11.0) == 0


def test_bot_bucket_limits_across_chats_and_can_be_switched_off() -> None:
    # Given a bot limit of 30/s
    flood = FloodControl(FloodLimits())
    # When 31 messages go to 31 different chats at once
    waits = [flood.check(1, chat, now=0.0) for chat in range(31)]
    # Then the 31st waits; with limits off nothing waits
    assert waits[:30] == [0] * 30 and waits[30] == 1
    flood.limits.update({"enabled": False})
    assert flood.check(1, 0, now=0.0) == 0


def test_group_limit_is_twenty_per_minute() -> None:
    flood = FloodControl(FloodLimits())
    # Given 20 messages to a group at once, When a 21st follows, Then it waits 3 s (60/20)
    assert [flood.check(1, -5, group=True, now=0.0) for _ in range(20)] == [0] * 20
    assert flood.check(1, -5, group=True, now=0.0) == 3


def test_a_group_and_a_private_chat_with_one_id_have_separate_buckets() -> None:
    flood = FloodControl(FloodLimits(private_chat_burst=1, group_burst=1))
    assert flood.check(1, 5, now=0.0) == 0
    assert flood.check(1, 5, group=True, now=0.0) == 0
    assert flood.check(1, 5, now=0.0) == 1


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"private_chat_burst": 5.0}, {"private_chat_burst": 5}),
        ({"bot_rate": 10}, {"bot_rate": 10.0}),
        ({"enabled": False}, {"enabled": False}),
    ],
)
def test_limits_can_be_changed_at_run_time(
    changes: dict[str, Any], expected: dict[str, Any]
) -> None:
    # Given default limits, When some change, Then those change, to their field's type
    limits = FloodLimits()
    limits.update(changes)
    data = limits.to_json()
    assert data == FloodLimits().to_json() | expected
    assert all(type(data[name]) is type(value) for name, value in expected.items())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bot_rte": 1}, "unknown limit 'bot_rte'; known: bot_burst, bot_rate"),
        ({"bot_rate": 0}, "limit 'bot_rate' must be a positive number, got 0"),
        ({"bot_rate": True}, "must be a positive number, got True"),
        ({"group_burst": "20"}, "must be a positive number, got '20'"),
        ({"enabled": 1}, "'enabled' must be true or false"),
    ],
)
def test_bad_limit_changes_are_refused(changes: dict[str, Any], message: str) -> None:
    limits = FloodLimits()
    with pytest.raises(ValueError, match=message):
        limits.update(changes)
    assert limits == FloodLimits()


def test_paid_messages_take_free_tokens_first_then_are_charged() -> None:
    # Given a bot limit of 2/s and the paid ceiling of 5/s
    flood = FloodControl(FloodLimits(bot_rate=2.0, bot_burst=2, paid_rate=5.0, paid_burst=5))
    # When six paid messages go to six chats at once
    answers = [flood.check_paid(1, chat, False, can_pay=True, now=0.0) for chat in range(6)]
    # Then two are free, three are charged and the sixth is over the paid ceiling
    assert answers[:5] == [(0, False), (0, False), (0, True), (0, True), (0, True)]
    assert answers[5] == (1, False)


def test_a_paid_message_the_bot_cannot_pay_for_is_refused_and_takes_nothing() -> None:
    flood = FloodControl(FloodLimits(bot_rate=1.0, bot_burst=1))
    assert flood.check_paid(1, 10, False, can_pay=False, now=0.0) == (0, False)  # free
    # When the free bucket is empty and the bot has no Stars
    assert flood.check_paid(1, 11, False, can_pay=False, now=0.0) == (NEEDS_STARS, False)
    # Then chat 11's bucket is untouched: a message it is sent without the flag later passes
    assert flood.check(1, 11, now=1.0) == 0


def test_paid_messages_still_respect_the_chat_limit() -> None:
    flood = FloodControl(FloodLimits(private_chat_rate=1.0, private_chat_burst=1))
    assert flood.check_paid(1, 10, False, can_pay=True, now=0.0) == (0, False)
    assert flood.check_paid(1, 10, False, can_pay=True, now=0.0) == (1, False)
