"""Typed updates from what the inbox hands over: messages (commands, chat and content types,
media that can be sent back), edits, button presses, blocks and group membership."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from telethon.tl import types

from tests.unit.bots.updates import (
    BOT,
    GROUP,
    SENT_AT,
    USER,
    callback,
    document_media,
    message,
    photo_media,
    stopped,
)
from tgfleet.bots import (
    BotStopped,
    CallbackQuery,
    ChatKind,
    ChatMemberUpdated,
    ContentKind,
    Location,
    MediaRef,
    Message,
    OtherUpdate,
    from_inbound,
)
from tgfleet.inbox import InboundMessage


def test_a_command_with_a_mention_and_arguments_is_parsed() -> None:
    # Given "/Start@MyBot a  b" in a private chat
    event = from_inbound(message("/Start@MyBot a  b"))
    # Then it is a text message whose command, mention and arguments are known
    assert isinstance(event, Message)
    assert (event.command, event.mention, event.args, event.args_text) == (
        "start",
        "MyBot",
        ("a", "b"),
        "a  b",
    )
    assert (event.chat_id, event.user_id, event.message_id) == (USER, USER, 17)
    assert (event.chat_type, event.content_type, event.edited) == (
        ChatKind.PRIVATE,
        ContentKind.TEXT,
        False,
    )
    assert event.date == SENT_AT


@pytest.mark.parametrize("text", ["hello /start", "/", "/@bot", "//x", ""])
def test_texts_that_are_not_commands_have_none(text: str) -> None:
    event = from_inbound(message(text))
    assert isinstance(event, Message)
    assert (event.command, event.args) == (None, ())


def test_a_group_message_names_its_sender_and_an_edit_says_so() -> None:
    # Given an edit of a message a user wrote in a basic group
    event = from_inbound(message("hi", chat_id=-GROUP, sender=USER, kind="edit"))
    # Then the chat is the group, the user its sender, and it is marked edited
    assert isinstance(event, Message)
    assert (event.chat_id, event.user_id, event.chat_type, event.edited) == (
        -GROUP,
        USER,
        ChatKind.GROUP,
        True,
    )


def test_a_photo_carries_a_reference_that_can_be_sent_back() -> None:
    # Given a captioned photo with two sizes
    event = from_inbound(message("me", media=photo_media()))
    # Then it is a photo whose reference names its biggest size, and sends as outbox media
    assert isinstance(event, Message) and event.content_type is ContentKind.PHOTO
    assert event.media == MediaRef(
        "photo", 5, 6, base64.b64encode(b"ref").decode(), "image/jpeg", None, 50_000
    )
    assert event.media.as_media() == {"photo": [5, 6, "cmVm"]}


@pytest.mark.parametrize(
    ("attributes", "kind"),
    [
        ((types.DocumentAttributeFilename("cv.pdf"),), ContentKind.DOCUMENT),
        ((types.DocumentAttributeAudio(duration=3, voice=True),), ContentKind.VOICE),
        ((types.DocumentAttributeAudio(duration=3),), ContentKind.DOCUMENT),
        ((types.DocumentAttributeVideo(duration=1.5, w=10, h=10),), ContentKind.VIDEO),
        (
            (types.DocumentAttributeSticker(alt=":)", stickerset=types.InputStickerSetEmpty()),),
            ContentKind.STICKER,
        ),
    ],
)
def test_documents_are_told_apart_by_their_attributes(
    attributes: tuple[object, ...], kind: ContentKind
) -> None:
    event = from_inbound(message("", media=document_media(*attributes)))
    assert isinstance(event, Message) and event.content_type is kind
    assert event.media is not None and (event.media.kind, event.media.id) == ("document", 7)


def test_a_document_reference_has_its_name_type_and_size() -> None:
    media = document_media(types.DocumentAttributeFilename("cv.pdf"))
    event = from_inbound(message("", media=media))
    assert isinstance(event, Message)
    assert event.media == MediaRef("document", 7, 8, "AP8=", "application/pdf", "cv.pdf", 1234)


def test_locations_contacts_and_others() -> None:
    # Given a location, a contact, a dice and a photo that was deleted
    geo = types.MessageMediaGeo(types.GeoPoint(long=-9.1, lat=38.7, access_hash=1))
    contact = types.MessageMediaContact("+351", "Ann", "", "", 0)
    dice = types.MessageMediaDice(value=3, emoticon="🎲")
    deleted = types.MessageMediaPhoto(photo=types.PhotoEmpty(id=5))
    events = [from_inbound(message("", media=m)) for m in (geo, contact, dice, deleted)]
    assert all(isinstance(e, Message) for e in events)
    # Then each has its content type; a location its point, a contact its phone
    kinds = [e.content_type for e in events if isinstance(e, Message)]
    assert kinds == [
        ContentKind.LOCATION,
        ContentKind.CONTACT,
        ContentKind.OTHER,
        ContentKind.PHOTO,
    ]
    first, second, *_ = events
    assert isinstance(first, Message) and first.location == Location(38.7, -9.1)
    assert isinstance(second, Message) and second.contact is not None
    assert (second.contact.phone, second.contact.user_id) == ("+351", None)


def test_a_button_press_is_a_callback_query() -> None:
    event = from_inbound(callback(b"vote:like:42"))
    assert event == CallbackQuery(777, USER, USER, 30, b"vote:like:42")
    assert isinstance(event, CallbackQuery) and event.data_text == "vote:like:42"


def test_undecodable_callback_data_still_has_a_text() -> None:
    event = from_inbound(callback(b"\xff\x01"))
    assert isinstance(event, CallbackQuery) and event.data_text == "\ufffd\x01"


@pytest.mark.parametrize("flag", [True, False])
def test_blocking_and_unblocking_the_bot(flag: bool) -> None:
    assert from_inbound(stopped(flag)) == BotStopped(USER, flag)


def test_the_bot_added_to_and_removed_from_a_group() -> None:
    # Given service messages: the bot (id 5000) added by a user, then removed
    def service(action: object) -> InboundMessage:
        tl = types.MessageService(
            id=3,
            peer_id=types.PeerChat(GROUP),
            date=SENT_AT,
            from_id=types.PeerUser(USER),
            action=action,
        )
        return InboundMessage(BOT, -GROUP, USER, 3, "", tl, "chat_member", update=tl)

    added = from_inbound(service(types.MessageActionChatAddUser(users=[5000])))
    removed = from_inbound(service(types.MessageActionChatDeleteUser(user_id=5000)))
    # Then they are membership changes of that group, done by the user, announced by
    # service message 3
    assert added == ChatMemberUpdated(-GROUP, 5000, True, USER, 3)
    assert removed == ChatMemberUpdated(-GROUP, 5000, False, USER, 3)


def test_joining_by_a_link_is_the_user_joining_by_themselves() -> None:
    tl = types.MessageService(
        id=4,
        peer_id=types.PeerChat(GROUP),
        date=SENT_AT,
        from_id=types.PeerUser(USER),
        action=types.MessageActionChatJoinedByLink(inviter_id=5000),
    )
    inbound = InboundMessage(BOT, -GROUP, USER, 4, "", tl, "chat_member")
    assert from_inbound(inbound) == ChatMemberUpdated(-GROUP, USER, True, USER, 4)


def test_a_participant_update_is_a_membership_change() -> None:
    left = types.UpdateChatParticipant(
        chat_id=GROUP,
        date=SENT_AT,
        actor_id=USER,
        user_id=5000,
        qts=1,
        prev_participant=types.ChatParticipant(user_id=5000, inviter_id=USER, date=SENT_AT),
    )
    inbound = InboundMessage(BOT, 0, None, 0, "", None, "chat_member", update=left)
    # The chat id is worked out from the update when the inbox gave none
    assert from_inbound(inbound) == ChatMemberUpdated(-GROUP, 5000, False, USER)


def test_a_supergroup_participant_update_joins_and_leaves_by_status() -> None:
    def change(prev: Any, new: Any) -> InboundMessage:
        update = types.UpdateChannelParticipant(
            channel_id=GROUP,
            date=SENT_AT,
            actor_id=USER,
            user_id=5000,
            prev_participant=prev,
            new_participant=new,
            qts=2,
        )
        return InboundMessage(BOT, 0, None, 0, "", None, "chat_member", update=update)

    member = types.ChannelParticipant(user_id=5000, date=SENT_AT)
    left = types.ChannelParticipantLeft(peer=types.PeerUser(5000))
    rights = types.ChatBannedRights(until_date=None, send_messages=True)
    banned = types.ChannelParticipantBanned(
        peer=types.PeerUser(5000), kicked_by=USER, date=SENT_AT, banned_rights=rights, left=True
    )
    muted = types.ChannelParticipantBanned(
        peer=types.PeerUser(5000), kicked_by=USER, date=SENT_AT, banned_rights=rights
    )
    chat = -(10**12) - GROUP  # a channel's marked id
    # A user who joins, and one who leaves or is banned out, are membership changes
    assert from_inbound(change(None, member)) == ChatMemberUpdated(chat, 5000, True, USER)
    assert from_inbound(change(member, left)) == ChatMemberUpdated(chat, 5000, False, USER)
    assert from_inbound(change(member, banned)) == ChatMemberUpdated(chat, 5000, False, USER)
    # A member who is only restricted stays in: no join, no leave, no handler kind takes it
    assert from_inbound(change(member, muted)) == OtherUpdate("chat_member")


@pytest.mark.parametrize("kind", ["user_name", "other", "callback", "bot_stopped"])
def test_other_kinds_or_a_missing_update_give_an_other_update(kind: str) -> None:
    # Given a kind handlers do not take, or a callback/stop without its raw update
    inbound = InboundMessage(BOT, USER, USER, 0, "", None, kind)
    assert from_inbound(inbound) == OtherUpdate(kind)


def test_an_inbound_message_without_the_update_field_still_converts() -> None:
    # Given an object shaped like an older InboundMessage (no ``update`` attribute)
    class Older:
        bot_id, chat_id, sender_id, tg_message_id, text, message, kind = (
            BOT,
            USER,
            USER,
            1,
            "hi",
            None,
            "callback",
        )

    assert from_inbound(Older()) == OtherUpdate("callback")  # type: ignore[arg-type]
