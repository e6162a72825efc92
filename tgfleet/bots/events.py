"""The typed updates a handler receives (``ctx.update``), built from what the inbox hands over.

``from_inbound(inbound)`` turns an ``InboundMessage`` into one of:

- ``Message``: a new message (``edited=False``) or an edit of one (``edited=True``), with
  its command and arguments parsed, the chat type, the content type and a reference to
  its media that a handler can send back;
- ``CallbackQuery``: an inline button was pressed (``data`` as Telegram sent it);
- ``BotStopped``: a user blocked (``stopped=True``) or unblocked the bot;
- ``ChatMemberUpdated``: someone (the bot itself too) joined or left a group;
- ``OtherUpdate``: any other kind the inbox records (no handler kind takes it).

Nothing here touches a database or Telegram: these are plain frozen dataclasses.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from telethon import utils
from telethon.tl import types

from tgfleet.inbox.record import InboundMessage


class ChatKind(StrEnum):
    PRIVATE = "private"
    GROUP = "group"
    CHANNEL = "channel"


class ContentKind(StrEnum):
    TEXT = "text"
    PHOTO = "photo"
    DOCUMENT = "document"
    VOICE = "voice"
    VIDEO = "video"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACT = "contact"
    OTHER = "other"


@dataclass(frozen=True)
class MediaRef:
    """A photo or document a message carried, enough to send it again."""

    kind: str  # "photo" or "document"
    id: int
    access_hash: int
    file_reference: str  # base64
    mime_type: str | None = None
    file_name: str | None = None
    size: int | None = None

    def as_media(self) -> dict[str, Any]:
        """The outbox's ``media`` option: ``ctx.reply("again", media=ref.as_media())``."""
        return {self.kind: [self.id, self.access_hash, self.file_reference]}


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float


@dataclass(frozen=True)
class Contact:
    phone: str
    first_name: str
    last_name: str
    user_id: int | None


@dataclass(frozen=True)
class Message:
    """A message, or with ``edited=True`` an edit of one.

    ``command`` is the lower-cased name of a leading ``/command`` (None otherwise),
    ``mention`` the bot it names (``/start@MyBot``), ``args`` the words after it and
    ``args_text`` the rest of the text as written.
    """

    chat_id: int
    user_id: int | None
    message_id: int
    text: str
    chat_type: ChatKind
    content_type: ContentKind
    edited: bool = False
    command: str | None = None
    mention: str | None = None
    args: tuple[str, ...] = ()
    args_text: str = ""
    media: MediaRef | None = None
    location: Location | None = None
    contact: Contact | None = None
    reply_to_message_id: int | None = None
    date: datetime | None = None


@dataclass(frozen=True)
class CallbackQuery:
    """A pressed inline button: answer it with ``ctx.answer()``."""

    query_id: int
    user_id: int
    chat_id: int
    message_id: int
    data: bytes

    @property
    def data_text(self) -> str:
        """The data as text (undecodable bytes replaced)."""
        return self.data.decode(errors="replace")


@dataclass(frozen=True)
class BotStopped:
    user_id: int
    stopped: bool


@dataclass(frozen=True)
class ChatMemberUpdated:
    """``user_id`` joined (``joined=True``) or left ``chat_id``; ``actor_id`` did it (the
    user themselves when they joined by a link or left).

    ``message_id`` is the group's service message that says so ("Ann added Ben"), which
    ``ctx.delete()`` deletes; None when the change came as a participant update, which
    is how Telegram tells a bot of its own joining or leaving.
    """

    chat_id: int
    user_id: int
    joined: bool
    actor_id: int | None = None
    message_id: int | None = None


@dataclass(frozen=True)
class OtherUpdate:
    kind: str


Event = Message | CallbackQuery | BotStopped | ChatMemberUpdated | OtherUpdate

_COMMAND = re.compile(r"/([A-Za-z0-9_]+)(?:@([A-Za-z0-9_]+))?(?:\s+|$)(.*)", re.DOTALL)


def parse_command(text: str) -> tuple[str, str | None, str] | None:
    """(name lower-cased, mention, rest) of ``/name@mention rest``, or None."""
    match = _COMMAND.fullmatch(text.strip())
    if match is None:
        return None
    return match.group(1).lower(), match.group(2), match.group(3).strip()


def _document_kind(document: types.Document) -> ContentKind:
    for attribute in document.attributes:
        if isinstance(attribute, types.DocumentAttributeSticker):
            return ContentKind.STICKER
        if isinstance(attribute, types.DocumentAttributeAudio) and attribute.voice:
            return ContentKind.VOICE
        if isinstance(attribute, types.DocumentAttributeVideo):
            return ContentKind.VIDEO
    return ContentKind.DOCUMENT


def _largest(photo: types.Photo) -> int | None:
    """The byte size of the photo's biggest version (None: unknown)."""
    sizes = [0]
    for size in photo.sizes:
        if isinstance(size, types.PhotoSize):
            sizes.append(size.size)
        elif isinstance(size, types.PhotoSizeProgressive):
            sizes.extend(size.sizes)
    return max(sizes) or None


def _content(
    message: types.Message | None, text: str
) -> tuple[ContentKind, MediaRef | None, Location | None, Contact | None]:
    media = getattr(message, "media", None)
    if media is None or isinstance(media, types.MessageMediaWebPage):
        return (ContentKind.TEXT if text else ContentKind.OTHER), None, None, None
    if isinstance(media, types.MessageMediaPhoto):
        photo = media.photo
        if not isinstance(photo, types.Photo):
            return ContentKind.PHOTO, None, None, None
        ref = MediaRef(
            "photo",
            photo.id,
            photo.access_hash,
            base64.b64encode(photo.file_reference).decode(),
            "image/jpeg",
            None,
            _largest(photo),
        )
        return ContentKind.PHOTO, ref, None, None
    if isinstance(media, types.MessageMediaDocument):
        document = media.document
        if not isinstance(document, types.Document):
            return ContentKind.DOCUMENT, None, None, None
        name = next(
            (
                a.file_name
                for a in document.attributes
                if isinstance(a, types.DocumentAttributeFilename)
            ),
            None,
        )
        ref = MediaRef(
            "document",
            document.id,
            document.access_hash,
            base64.b64encode(document.file_reference).decode(),
            document.mime_type,
            name,
            document.size,
        )
        return _document_kind(document), ref, None, None
    if isinstance(
        media, types.MessageMediaGeo | types.MessageMediaGeoLive | types.MessageMediaVenue
    ):
        geo = media.geo
        if isinstance(geo, types.GeoPoint):
            return ContentKind.LOCATION, None, Location(geo.lat, geo.long), None
        return ContentKind.LOCATION, None, None, None
    if isinstance(media, types.MessageMediaContact):
        contact = Contact(
            media.phone_number, media.first_name, media.last_name, media.user_id or None
        )
        return ContentKind.CONTACT, None, None, contact
    return ContentKind.OTHER, None, None, None


def _chat_kind(message: types.Message | None, chat_id: int) -> ChatKind:
    peer = getattr(message, "peer_id", None)
    if isinstance(peer, types.PeerUser):
        return ChatKind.PRIVATE
    if isinstance(peer, types.PeerChannel):
        return ChatKind.CHANNEL if getattr(message, "post", False) else ChatKind.GROUP
    if isinstance(peer, types.PeerChat):
        return ChatKind.GROUP
    return ChatKind.PRIVATE if chat_id > 0 else ChatKind.GROUP


def message_event(inbound: InboundMessage) -> Message:
    message = inbound.message if isinstance(inbound.message, types.Message) else None
    sender = getattr(getattr(message, "from_id", None), "user_id", None) or inbound.sender_id
    chat_type = _chat_kind(message, inbound.chat_id)
    if sender is None and chat_type is ChatKind.PRIVATE:
        sender = inbound.chat_id
    content, media, location, contact = _content(message, inbound.text)
    command = parse_command(inbound.text)
    name, mention, rest = command if command else (None, None, "")
    reply_to = getattr(getattr(message, "reply_to", None), "reply_to_msg_id", None)
    return Message(
        chat_id=inbound.chat_id,
        user_id=sender,
        message_id=inbound.tg_message_id,
        text=inbound.text,
        chat_type=chat_type,
        content_type=content,
        edited=inbound.kind == "edit",
        command=name,
        mention=mention,
        args=tuple(rest.split()),
        args_text=rest,
        media=media,
        location=location,
        contact=contact,
        reply_to_message_id=reply_to,
        date=getattr(message, "date", None),
    )


def _is_member(participant: Any) -> bool:
    """Whether a participant (of a participant update) is in the chat: not missing, not
    one who left, not banned out of it (a restricted member is still in)."""
    if participant is None or isinstance(participant, types.ChannelParticipantLeft):
        return False
    return not (isinstance(participant, types.ChannelParticipantBanned) and participant.left)


def _member_event(inbound: InboundMessage, raw: Any) -> Event:
    if isinstance(raw, types.UpdateChatParticipant | types.UpdateChannelParticipant):
        chat = (
            types.PeerChat(raw.chat_id)
            if isinstance(raw, types.UpdateChatParticipant)
            else (types.PeerChannel(raw.channel_id))
        )
        was, now = _is_member(raw.prev_participant), _is_member(raw.new_participant)
        if was == now:  # a member's rights or title changed: not a join or a leave
            return OtherUpdate(inbound.kind)
        return ChatMemberUpdated(
            chat_id=inbound.chat_id or utils.get_peer_id(chat),
            user_id=raw.user_id,
            joined=now,
            actor_id=raw.actor_id,
        )
    if isinstance(raw, types.UpdateNewMessage | types.UpdateNewChannelMessage):
        raw = raw.message
    if isinstance(raw, types.MessageService):
        chat_id = inbound.chat_id or utils.get_peer_id(raw.peer_id)
        actor = getattr(raw.from_id, "user_id", None) or inbound.sender_id
        action = raw.action
        if isinstance(action, types.MessageActionChatAddUser) and action.users:
            return ChatMemberUpdated(chat_id, action.users[0], True, actor, raw.id)
        if isinstance(
            action, types.MessageActionChatJoinedByLink | types.MessageActionChatJoinedByRequest
        ):
            return ChatMemberUpdated(chat_id, actor or 0, True, actor, raw.id)
        if isinstance(action, types.MessageActionChatDeleteUser):
            return ChatMemberUpdated(chat_id, action.user_id, False, actor, raw.id)
    return OtherUpdate(inbound.kind)


def from_inbound(inbound: InboundMessage) -> Event:
    """The typed update of ``inbound`` (``OtherUpdate`` for kinds handlers do not take)."""
    raw = getattr(inbound, "update", None)
    if inbound.kind in ("message", "edit"):
        return message_event(inbound)
    if inbound.kind == "callback" and isinstance(raw, types.UpdateBotCallbackQuery):
        return CallbackQuery(
            query_id=raw.query_id,
            user_id=raw.user_id,
            chat_id=inbound.chat_id or utils.get_peer_id(raw.peer),
            message_id=raw.msg_id,
            data=raw.data or b"",
        )
    if inbound.kind == "bot_stopped" and isinstance(raw, types.UpdateBotStopped):
        return BotStopped(user_id=raw.user_id, stopped=bool(raw.stopped))
    if inbound.kind == "chat_member":
        return _member_event(inbound, raw if raw is not None else inbound.message)
    return OtherUpdate(inbound.kind)
