"""The inbox on a real PostgreSQL: idempotent recording, per-chat order, dead-lettered
handler failures, and the order chain, driven directly (no worker processes)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.orm import Session

from tests.support.databases import query
from tests.support.envelopes import message_envelope
from tgfleet.db import fleet
from tgfleet.inbox import InboundMessage, drain_chat, record_and_handle
from tgfleet.platform.envelope import Envelope, decode
from tgfleet.platform.settings import Settings


@pytest.fixture
def bot_id(migrated: Settings) -> Iterator[int]:
    bot = uuid.uuid4().int % 10**9 + 10**9
    fleet.save_bot(migrated, f"{bot}:{'x' * 35}", name="inbox-test", admin_chat_ids=[])
    yield bot
    fleet.remove_bot(migrated, bot)


def envelope(
    bot_id: int, msg_id: int, text: str, chat: int = 777, prev: int | None = None
) -> Envelope:
    return decode(message_envelope(bot_id, chat, msg_id, text, prev=prev, access_hash=4242))


def deliver(settings: Settings, env: Envelope, handler: Callable[..., None]) -> None:
    """What the update task does, minus Celery: record + first step, then drain."""
    _, first = record_and_handle(settings, env, handler)
    drain_chat(settings, env.bot_id, env.chat_id, handler, first=first)


def stall(settings: Settings, bot_id: int) -> None:
    """Make the bot's inbound messages older than CHAIN_STALL_S."""
    query(
        settings,
        "UPDATE messages SET created_at = created_at - interval '31 seconds' "
        "WHERE bot_id = %s RETURNING 1",
        bot_id,
    )


def test_replays_change_nothing_and_handlers_run_once(migrated: Settings, bot_id: int) -> None:
    seen: list[str] = []

    def handler(session: Session, inbound: InboundMessage) -> None:
        seen.append(inbound.text)

    # Given the same update delivered three times
    for _ in range(3):
        deliver(migrated, envelope(bot_id, 1, "once"), handler)
    # Then it is stored once and its handler ran once
    assert seen == ["once"]
    assert query(migrated, "SELECT count(*) FROM messages WHERE bot_id = %s", bot_id) == [(1,)]
    hashes = query(migrated, "SELECT access_hash FROM entities WHERE bot_id = %s", bot_id)
    assert hashes == [(4242,)]


def test_out_of_order_arrival_is_handled_in_message_order(migrated: Settings, bot_id: int) -> None:
    seen: list[int] = []

    def handler(session: Session, inbound: InboundMessage) -> None:
        seen.append(inbound.tg_message_id)

    # When message 2 (whose predecessor is 1) arrives before message 1
    deliver(migrated, envelope(bot_id, 2, "second", prev=1), handler)
    # Then it waits for its predecessor
    assert seen == []
    # And once 1 arrives, both run, in order
    deliver(migrated, envelope(bot_id, 1, "first"), handler)
    assert seen == [1, 2]


def test_failing_handler_is_dead_lettered_and_the_chat_goes_on(
    migrated: Settings, bot_id: int
) -> None:
    seen: list[str] = []

    def handler(session: Session, inbound: InboundMessage) -> None:
        if inbound.text == "boom":
            raise RuntimeError("handler bug")
        seen.append(inbound.text)

    # Given a chat whose second message makes the handler raise
    for n, text in enumerate(["a", "boom", "c"], start=1):
        deliver(migrated, envelope(bot_id, n, text, prev=n - 1 or None), handler)
    # Then the bad message is dead-lettered with its reason, and the others ran in order
    assert seen == ["a", "c"]
    dead = query(
        migrated,
        "SELECT reason, payload->>'tg_message_id' FROM dead_updates WHERE bot_id = %s",
        bot_id,
    )
    assert dead == [("handler error: RuntimeError('handler bug')", "2")]
    assert query(
        migrated, "SELECT count(*) FROM messages WHERE bot_id = %s AND processed_at IS NULL", bot_id
    ) == [(0,)]


def test_a_message_whose_predecessor_never_came_runs_late_with_a_dead_letter(
    migrated: Settings, bot_id: int
) -> None:
    seen: list[str] = []

    def handler(session: Session, inbound: InboundMessage) -> None:
        seen.append(inbound.text)

    # Given message 2 of a chat, published after message 1, which never reached the inbox
    deliver(migrated, envelope(bot_id, 2, "second", prev=1), handler)
    # Then it waits for message 1, and nothing is dead-lettered yet
    assert seen == []
    assert query(migrated, "SELECT count(*) FROM dead_updates WHERE bot_id = %s", bot_id) == [(0,)]
    # When it has waited longer than CHAIN_STALL_S
    stall(migrated, bot_id)
    drain_chat(migrated, bot_id, 777, handler)
    # Then it runs, and a chain_gap dead letter names the message it ran without
    assert seen == ["second"]
    (row,) = query(migrated, "SELECT reason, payload FROM dead_updates WHERE bot_id = %s", bot_id)
    assert row[1] == {
        "kind": "chain_gap",
        "chat": 777,
        "message": 2,
        "missing": 1,
        "last_handled": None,
    }
    assert "ran without message 1" in row[0]


def test_a_gap_is_dead_lettered_even_when_the_late_message_s_handler_fails(
    migrated: Settings, bot_id: int
) -> None:
    def handler(session: Session, inbound: InboundMessage) -> None:
        raise RuntimeError("handler bug")

    # Given message 2 of a chat whose message 1 never came, waiting past CHAIN_STALL_S
    deliver(migrated, envelope(bot_id, 2, "second", prev=1), handler)
    stall(migrated, bot_id)
    # When it runs and its handler raises (its transaction rolls back)
    drain_chat(migrated, bot_id, 777, handler)
    # Then both are dead-lettered: the gap it ran after, and its own failure
    dead = query(
        migrated,
        "SELECT coalesce(payload->>'kind', 'handler'), reason FROM dead_updates "
        "WHERE bot_id = %s ORDER BY id",
        bot_id,
    )
    assert [kind for kind, _ in dead] == ["chain_gap", "handler"]
    assert "ran without message 1" in dead[0][1]
    assert dead[1][1] == "handler error: RuntimeError('handler bug')"
    assert query(
        migrated, "SELECT count(*) FROM messages WHERE bot_id = %s AND processed_at IS NULL", bot_id
    ) == [(0,)]
