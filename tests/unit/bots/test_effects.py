"""A handler's effects: outbox rows (split, held, deduplicated) and events, written with
the processed mark in one round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tgfleet.bots.effects import _INSERT_EVENTS, _INSERT_OUTBOX, Effects
from tgfleet.inbox.record import NEW_CONVERSATION
from tgfleet.sends.outbox import HELD_UNTIL, MAX_TEXT

#: What the inbox runs before a handler's effects (here: a chat's first message).
FIRST = (NEW_CONVERSATION, (42, 1001))


def test_a_long_reply_becomes_parts_only_the_first_unheld() -> None:
    # Given a reply longer than Telegram's limit, with a dedupe key
    effects = Effects(42)
    effects.queue(1001, "a" * (MAX_TEXT + 10), dedupe_key="welcome:1001")
    # Then two rows: the first sent at once, the second held until the first is sent,
    # linked by their keys, without the columns the insert fills itself
    assert [row["held"] for row in effects.outbox] == [False, True]
    assert [row["dedupe_key"] for row in effects.outbox] == ["welcome:1001", "welcome:1001#part1"]
    assert all("bot_id" not in row and "status" not in row for row in effects.outbox)
    assert "".join(row["text"] for row in effects.outbox) == "a" * (MAX_TEXT + 10)


def test_nothing_to_write_adds_no_statement() -> None:
    assert Effects(42).calls([FIRST]) == [FIRST]


def test_events_then_outbox_come_after_the_caller_s_statements() -> None:
    # Given an event and a reply
    effects = Effects(42)
    effects.event("echo", 1001, {"n": 1})
    effects.queue(1001, "hi", reply_to=17)
    # When the statements are asked for
    calls = effects.calls([FIRST])
    # Then the caller's come first and the outbox insert last (its rows are returned)
    assert [prepared for prepared, _ in calls] == [FIRST[0], _INSERT_EVENTS, _INSERT_OUTBOX]
    (_, events_args), (_, outbox_args) = calls[1], calls[2]
    assert events_args[0] == 42
    assert json.loads(events_args[1]) == [{"kind": "echo", "user_id": 1001, "data": {"n": 1}}]
    assert outbox_args[0] == 42 and outbox_args[2] == HELD_UNTIL
    [row] = json.loads(outbox_args[1])
    assert (row["chat_id"], row["text"], row["reply_to"], row["held"]) == (1001, "hi", 17, False)


def test_replies_to_one_chat_follow_one_another() -> None:
    # Given a handler that replies twice to its chat, once elsewhere, then once more here
    effects = Effects(42)
    effects.queue(1001, "first")
    effects.queue(2002, "elsewhere")
    effects.queue(1001, "second")
    effects.queue(1001, "third")
    rows = {row["text"]: row for row in effects.outbox}
    # Then the first goes at once and each later one to that chat waits for the one
    # before it, linked as the next part of a chain; the other chat's goes on its own
    assert [rows[t]["held"] for t in ("first", "second", "third", "elsewhere")] == [
        False,
        True,
        True,
        False,
    ]
    head = rows["first"]["dedupe_key"]
    assert head.startswith("chain:")
    assert rows["second"]["dedupe_key"] == f"{head}#part1"
    assert rows["third"]["dedupe_key"] == f"{head}#part2"
    assert rows["elsewhere"]["dedupe_key"] is None


def test_a_reply_with_its_own_key_or_time_is_not_chained() -> None:
    effects = Effects(42)
    effects.queue(1001, "scheduled", at=datetime.now(UTC) + timedelta(hours=1))
    effects.queue(1001, "now")  # nothing waits behind a scheduled send
    effects.queue(1001, "keyed", dedupe_key="welcome:1001")
    assert [row["held"] for row in effects.outbox] == [False, False, False]
    assert [row["dedupe_key"] for row in effects.outbox] == [None, None, "welcome:1001"]
