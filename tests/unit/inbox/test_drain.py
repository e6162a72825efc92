"""The ordered drain's pure parts: the per-chat lock key and how steps add up."""

from __future__ import annotations

import pytest

from tgfleet.inbox.drain import DrainResult, Step, chat_lock_key


def test_the_chat_lock_key_is_stable_and_fits_a_bigint() -> None:
    keys = {chat_lock_key(bot, chat) for bot in range(1, 30) for chat in (-100123, -5, 7, 10**12)}
    # Then every (bot, chat) gets its own key, a signed 64-bit one (pg_advisory_xact_lock)
    assert len(keys) == 29 * 4
    assert all(-(2**63) <= key < 2**63 for key in keys)
    assert chat_lock_key(42, 1001) == chat_lock_key(42, 1001)


def test_bot_and_chat_do_not_run_together() -> None:
    # "1:23" and "12:3" must not share a lock
    assert chat_lock_key(1, 23) != chat_lock_key(12, 3)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (["ok", "ok", "dead", "empty"], DrainResult(processed=2, dead=1)),
        (["ok", "wait"], DrainResult(processed=1, waiting=True)),
        (["busy"], DrainResult(busy=True)),
        (["empty"], DrainResult()),
    ],
)
def test_a_drain_adds_up_its_steps(steps: list[str], expected: DrainResult) -> None:
    result = DrainResult()
    for outcome in steps:
        result.add(Step(outcome))
    assert result == expected
