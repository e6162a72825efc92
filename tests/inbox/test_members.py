"""Members joining and leaving a group, through the inbox on a real PostgreSQL: the
service message in order with the group's messages, the bot's participant update (on
its qts) after them, each handled once, a failing handler's update dead-lettered."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session
from telethon.tl import types
from telethon.tl.tlobject import TLObject

from tests.support.databases import query
from tgfleet.db import fleet, session_scope
from tgfleet.inbox import InboundMessage, drain_chat, record_and_handle
from tgfleet.inbox.drain import is_key_processed, is_processed
from tgfleet.platform.envelope import Envelope, decode, encode
from tgfleet.platform.errors import RetryLater
from tgfleet.platform.settings import Settings

GROUP, ANN, BEN = 5501, 7001, 7002
CHAT = -GROUP


@pytest.fixture
def bot_id(migrated: Settings) -> Iterator[int]:
    bot = uuid.uuid4().int % 10**9 + 10**9
    fleet.save_bot(migrated, f"{bot}:{'x' * 35}", name="members-test", admin_chat_ids=[])
    yield bot
    fleet.remove_bot(migrated, bot)


def posted(bot_id: int, msg_id: int, text: str, prev: int | None = None) -> Envelope:
    """Ann's message ``msg_id`` in the group."""
    message = types.Message(
        id=msg_id, peer_id=types.PeerChat(GROUP), date=datetime.now(UTC), message=text,
        from_id=types.PeerUser(ANN),
    )  # fmt: skip
    return published(bot_id, types.UpdateNewMessage(message=message, pts=msg_id, pts_count=1), prev)


def added(bot_id: int, msg_id: int, member: int, prev: int | None = None) -> Envelope:
    """The group's service message ``msg_id``: Ann added ``member``."""
    message = types.MessageService(
        id=msg_id, peer_id=types.PeerChat(GROUP), date=datetime.now(UTC),
        from_id=types.PeerUser(ANN), action=types.MessageActionChatAddUser(users=[member]),
    )  # fmt: skip
    return published(bot_id, types.UpdateNewMessage(message=message, pts=msg_id, pts_count=1), prev)


def bot_joined(bot_id: int, qts: int, prev: int | None = None) -> Envelope:
    """The bot's participant update: Ann added it to the group."""
    now = datetime.now(UTC)
    update = types.UpdateChatParticipant(
        chat_id=GROUP, date=now, actor_id=ANN, user_id=bot_id, qts=qts,
        new_participant=types.ChatParticipant(user_id=bot_id, inviter_id=ANN, date=now),
    )  # fmt: skip
    return published(bot_id, update, prev)


def published(bot_id: int, update: TLObject, prev: int | None) -> Envelope:
    return decode(encode(bot_id, update, prev_id=prev))


def deliver(settings: Settings, env: Envelope, handler: Callable[..., None]) -> None:
    """What the update task does, minus Celery: record + first step, then drain."""
    assert env.chat_id is not None
    _, first = record_and_handle(settings, env, handler)
    drain_chat(settings, env.bot_id, env.chat_id, handler, first=first)


def what(inbound: InboundMessage) -> str:
    if inbound.kind == "chat_member" and inbound.update is not None:
        return f"participant {inbound.update.user_id}"
    if inbound.kind == "chat_member":
        return f"service {inbound.tg_message_id}"
    return inbound.text


def test_membership_changes_are_handled_once_in_the_groups_order(
    migrated: Settings, bot_id: int
) -> None:
    seen: list[str] = []

    def handler(session: Session, inbound: InboundMessage) -> None:
        seen.append(what(inbound))

    # Given a group message 6, the service message 8 adding Ben (after 6), and the bot's
    # own participant update (after 8), arriving in the reverse order, twice each
    updates = [posted(bot_id, 6, "hello"), added(bot_id, 8, BEN, 6), bot_joined(bot_id, 1, 8)]
    for env in reversed(updates * 2):
        deliver(migrated, env, handler)
    # Then each was handled once, in the group's order
    assert seen == ["hello", "service 8", f"participant {bot_id}"]
    rows = query(
        migrated,
        "SELECT tg_message_id, sender_id, payload->>'kind' FROM messages "
        "WHERE bot_id = %s AND chat_id = %s ORDER BY id",
        bot_id,
        CHAT,
    )
    # And each is an inbound row of the group, by whoever made the change
    assert sorted(rows) == [(6, ANN, "message"), (8, ANN, "chat_member"), (8, ANN, "chat_member")]


def test_a_failing_member_handler_is_dead_lettered_and_the_group_goes_on(
    migrated: Settings, bot_id: int
) -> None:
    seen: list[str] = []

    def handler(session: Session, inbound: InboundMessage) -> None:
        if inbound.kind == "chat_member":
            raise RuntimeError("welcome failed")
        seen.append(inbound.text)

    # Given a service message and a participant update whose handler raises, then a message
    participant = bot_joined(bot_id, 2, 8)
    for env in (added(bot_id, 8, BEN), participant, posted(bot_id, 9, "after", 8)):
        deliver(migrated, env, handler)
    # Then both are dead-lettered (the participant update by its own key) and the message ran
    assert seen == ["after"]
    dead = query(
        migrated, "SELECT dedupe_key FROM dead_updates WHERE bot_id = %s ORDER BY id", bot_id
    )
    assert dead == [(f"h:{CHAT}:8",), (f"h:{CHAT}:{participant.key}",)]
    # And nothing of the group is left waiting, whichever way a busy worker looks
    with session_scope(migrated, bot_id=bot_id) as session:
        assert is_processed(session, bot_id, CHAT, 8)
        assert is_key_processed(session, bot_id, CHAT, participant.key)


def test_a_message_is_processed_even_while_the_update_after_it_waits(
    migrated: Settings, bot_id: int
) -> None:
    # Given service message 8 handled, and the participant update placed after it recorded
    # but not handled yet (its handler asks to run later)
    def handler(session: Session, inbound: InboundMessage) -> None:
        if inbound.update is not None:
            raise RetryLater("not now", 60)

    participant = bot_joined(bot_id, 3, 8)
    deliver(migrated, added(bot_id, 8, BEN), handler)
    deliver(migrated, participant, handler)
    # Then a worker asking whether message 8 is done is told yes (the participant row
    # carries 8 as its place, not as its identity), and the participant update is not
    with session_scope(migrated, bot_id=bot_id) as session:
        assert is_processed(session, bot_id, CHAT, 8)
        assert not is_key_processed(session, bot_id, CHAT, participant.key)
