"""What a recorded message becomes: its row's columns, and what handlers are given."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any, NamedTuple

from telethon.tl import types

from tgfleet.inbox.record import InboundMessage, inbound_from_row, is_message, message_params
from tgfleet.platform.envelope import Envelope, decode, encode

SENT_AT = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


class Row(NamedTuple):
    """The columns of a waiting message as the drain's statements return them."""

    sender_id: int | None
    tg_message_id: int | None
    text: str | None
    kind: str | None
    tl: str | None


def envelope(
    text: str = "hi", chat: types.TypePeer | None = None, from_id: Any = None, prev: int = 16
) -> Envelope:
    message = types.Message(
        id=17,
        peer_id=chat or types.PeerUser(1001),
        date=SENT_AT,
        message=text,
        from_id=from_id,
    )
    update = types.UpdateNewMessage(message=message, pts=1, pts_count=1)
    return decode(encode(42, update, prev_id=prev))


def test_a_private_message_row_names_its_sender_and_keeps_the_raw_message() -> None:
    # Given a private message without from_id (Telegram leaves it out in private chats)
    env = envelope("hello")
    # When its row is made
    bot, key, chat, sender, msg, body, payload = message_params(env)
    # Then the sender is the chat's user, and the payload can rebuild the message
    assert (bot, key, chat, sender, msg, body) == (42, "m:1001:17", 1001, 1001, 17, "hello")
    stored = json.loads(payload)
    assert (stored["kind"], stored["prev"]) == ("message", 16)
    assert base64.b64decode(stored["tl"]) == bytes(env.update.message)


def test_in_a_group_the_sender_comes_from_from_id() -> None:
    env = envelope(chat=types.PeerChat(55), from_id=types.PeerUser(7))
    assert message_params(env)[2:4] == (-55, 7)


def test_a_group_message_without_a_sender_has_none() -> None:
    # A channel post in a group (anonymous admin): no user to attribute it to
    env = envelope(chat=types.PeerChat(55), from_id=types.PeerChannel(99))
    assert message_params(env)[3] is None


def test_only_chat_messages_are_messages() -> None:
    name = types.UpdateUserName(user_id=5, first_name="B", last_name="", usernames=[])
    assert is_message(envelope())
    assert not is_message(decode(encode(42, name)))


def test_the_message_just_recorded_is_reused_not_parsed() -> None:
    # Given the envelope that recorded message 17, and its row
    env = envelope("hi")
    row = Row(1001, 17, "hi", "message", "not even base64")
    # When handlers are given it, Then it is the envelope's own object (no parse)
    inbound = inbound_from_row(42, 1001, row, env)
    assert inbound.message is env.update.message
    assert (inbound.sender_id, inbound.tg_message_id, inbound.text) == (1001, 17, "hi")


def test_an_older_message_is_parsed_from_its_row() -> None:
    # Given a waiting message 16 drained while handling 17
    older = types.Message(id=16, peer_id=types.PeerUser(1001), date=SENT_AT, message="first")
    row = Row(1001, 16, "first", "message", base64.b64encode(bytes(older)).decode())
    # When handlers are given it, Then the message is rebuilt from the stored TL
    inbound = inbound_from_row(42, 1001, row, envelope())
    assert inbound.message is not None and bytes(inbound.message) == bytes(older)
    assert inbound.tg_message_id == 16


def test_a_row_without_text_kind_or_tl_still_makes_a_message() -> None:
    inbound = inbound_from_row(42, 1001, Row(None, None, None, None, None))
    assert inbound == InboundMessage(42, 1001, None, 0, "", None, "message")


def test_only_a_real_photo_is_a_photo() -> None:
    photo = types.Photo(id=5, access_hash=6, file_reference=b"r", date=SENT_AT, sizes=[], dc_id=2)

    def with_media(media: Any) -> InboundMessage:
        message = types.Message(id=1, peer_id=types.PeerUser(1), date=SENT_AT, media=media)
        return InboundMessage(42, 1, 1, 1, "", message, "message")

    assert with_media(types.MessageMediaPhoto(photo=photo)).photo is photo
    assert with_media(types.MessageMediaPhoto(photo=types.PhotoEmpty(id=5))).photo is None
    assert with_media(None).photo is None
    assert InboundMessage(42, 1, 1, 1, "", None, "message").photo is None


# -- members joining and leaving ----------------------------------------------------------


def member_service(msg_id: int = 8) -> types.UpdateNewMessage:
    """User 7 added user 9 to basic group 55 (the group's service message ``msg_id``)."""
    message = types.MessageService(
        id=msg_id,
        peer_id=types.PeerChat(55),
        date=SENT_AT,
        from_id=types.PeerUser(7),
        action=types.MessageActionChatAddUser(users=[9]),
    )
    return types.UpdateNewMessage(message=message, pts=3, pts_count=1)


def bot_added(qts: int = 1) -> types.UpdateChatParticipant:
    """The bot's own participant update: user 7 added it (id 42) to basic group 55."""
    return types.UpdateChatParticipant(
        chat_id=55,
        date=SENT_AT,
        actor_id=7,
        user_id=42,
        qts=qts,
        new_participant=types.ChatParticipant(user_id=42, inviter_id=7, date=SENT_AT),
    )


def test_a_member_service_message_is_stored_as_a_message_of_its_group() -> None:
    # Given the service message 8 published after the group's message 6
    env = decode(encode(42, member_service(), prev_id=6))
    # When its row is made, Then it is the group's message 8, sent by the one who added
    bot, key, chat, sender, msg, body, payload = message_params(env)
    assert (bot, key, chat, sender, msg, body) == (42, "j:-55:8", -55, 7, 8, "")
    stored = json.loads(payload)
    assert (stored["kind"], stored["prev"], "key" in stored) == ("chat_member", 6, False)
    assert is_message(env)
    # And handlers get the service message itself, with no update of its own
    row = Row(7, 8, "", "chat_member", stored["tl"])
    inbound = inbound_from_row(42, -55, row, env)
    assert isinstance(inbound.message, types.MessageService) and inbound.update is None
    assert (inbound.kind, inbound.tg_message_id, inbound.sender_id) == ("chat_member", 8, 7)


def test_a_participant_update_is_stored_after_the_groups_last_message() -> None:
    # Given the bot's participant update published after the group's service message 8
    env = decode(encode(42, bot_added(), prev_id=8))
    # When its row is made, Then it takes message 8's place (its own key, the actor as
    # the sender), like a press or a block
    bot, key, chat, sender, msg, body, payload = message_params(env)
    assert (bot, key, chat, sender, msg, body) == (42, "p:-55:42:1:1", -55, 7, 8, "")
    stored = json.loads(payload)
    assert (stored["kind"], stored["prev"], stored["key"]) == ("chat_member", 8, key)
    # And handlers get the raw update, no message
    inbound = inbound_from_row(42, -55, Row(7, 8, "", "chat_member", stored["tl"]))
    assert inbound.message is None and bytes(inbound.update) == bytes(env.update)
    assert inbound.tg_message_id == 8
