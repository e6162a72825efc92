"""World objects rendered as Telethon TL objects, as one account (bot) sees them."""

from __future__ import annotations

import datetime as dt
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from telethon.tl import types

from tgfleet.simulator.markup import markup_tl
from tgfleet.simulator.mtproto import vector
from tgfleet.simulator.world import Bot, Document, Group, Photo, StoredMessage, User, World


def when(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(timestamp), tz=dt.UTC)


def user_tl(world: World, account: Bot, peer: Bot | User) -> types.User:
    """``peer`` as ``account`` sees it: with the access_hash that account must present."""
    if isinstance(peer, Bot):
        return types.User(
            id=peer.id,
            is_self=peer.id == account.id,
            bot=True,
            bot_info_version=1,
            bot_nochats=True,
            access_hash=world.access_hash(account.id, peer.id),
            first_name=peer.first_name,
            username=peer.username,
        )
    return types.User(
        id=peer.id,
        access_hash=world.access_hash(account.id, peer.id),
        first_name=peer.first_name,
        last_name=peer.last_name,
        username=peer.username,
        lang_code=peer.lang_code,  # Telegram tells bots the language of the user's app
    )


def photo_tl(photo: Photo) -> types.Photo:
    return types.Photo(
        id=photo.id,
        access_hash=photo.access_hash,
        file_reference=photo.file_reference,
        date=when(photo.date),
        sizes=[types.PhotoSize(type="x", w=photo.width, h=photo.height, size=photo.size)],
        dc_id=2,
    )


def document_tl(doc: Document) -> types.Document:
    attributes: list[types.TypeDocumentAttribute] = []
    if doc.file_name:
        attributes.append(types.DocumentAttributeFilename(doc.file_name))
    if doc.kind == "voice":
        attributes.append(types.DocumentAttributeAudio(int(doc.duration), voice=True))
    elif doc.kind == "video":
        attributes.append(types.DocumentAttributeVideo(doc.duration, doc.width, doc.height))
    return types.Document(
        id=doc.id,
        access_hash=doc.access_hash,
        file_reference=doc.file_reference,
        date=when(doc.date),
        mime_type=doc.mime_type,
        size=doc.size,
        dc_id=2,
        attributes=attributes,
    )


def _media_tl(world: World, message: StoredMessage) -> types.TypeMessageMedia | None:
    photo = None if message.photo_id is None else world.photos.get(message.photo_id)
    if photo is not None:
        return types.MessageMediaPhoto(photo=photo_tl(photo))
    doc = None if message.document_id is None else world.documents.get(message.document_id)
    if doc is not None:
        return types.MessageMediaDocument(
            document=document_tl(doc), voice=doc.kind == "voice" or None
        )
    return None


def _action_tl(action: dict[str, Any]) -> types.TypeMessageAction:
    if action["type"] == "add_user":
        return types.MessageActionChatAddUser(users=[action["user_id"]])
    return types.MessageActionChatDeleteUser(user_id=action["user_id"])


def message_tl(
    world: World, bot: Bot, message: StoredMessage
) -> types.Message | types.MessageService:
    sender = bot.id if message.out else message.peer_id
    peer: types.TypePeer = (
        types.PeerUser(message.peer_id)
        if message.chat_id is None
        else types.PeerChat(message.chat_id)
    )
    if message.action is not None:
        return types.MessageService(
            id=message.id,
            peer_id=peer,
            from_id=types.PeerUser(sender),
            date=when(message.date),
            action=_action_tl(message.action),
            out=message.out,
        )
    return types.Message(
        id=message.id,
        peer_id=peer,
        from_id=types.PeerUser(sender),
        date=when(message.date),
        message=message.text,
        out=message.out,
        reply_to=(
            None
            if message.reply_to is None
            else types.MessageReplyHeader(reply_to_msg_id=message.reply_to)
        ),
        media=_media_tl(world, message),
        entities=_command_entities(message),
        edit_date=None if message.edit_date is None else when(message.edit_date),
        reply_markup=markup_tl(message.markup),
    )


def _command_entities(message: StoredMessage) -> list[types.TypeMessageEntity] | None:
    """A user's "/command args" carries a bot_command entity, as Telegram marks it."""
    if message.out or not message.text.startswith("/"):
        return None
    return [types.MessageEntityBotCommand(offset=0, length=len(message.text.split()[0]))]


def peer_users(world: World, bot: Bot, messages: list[StoredMessage]) -> list[types.User]:
    """The users the messages mention, with this bot's access hashes."""
    seen: dict[int, types.User] = {}
    for message in messages:
        ids = [message.peer_id]
        if message.action is not None:
            ids.append(message.action["user_id"])
        for peer_id in ids:
            peer = world.users.get(peer_id) or world.bots.get(peer_id)
            if peer is not None and peer_id not in seen:
                seen[peer_id] = user_tl(world, bot, peer)
    return list(seen.values())


def chat_tl(group: Group) -> types.Chat:
    return types.Chat(
        id=group.id,
        title=group.title,
        photo=types.ChatPhotoEmpty(),
        participants_count=len(group.members),
        date=when(group.date),
        version=1,
    )


def peer_chats(world: World, messages: list[StoredMessage]) -> list[types.Chat]:
    """The groups the messages were posted in."""
    ids = {m.chat_id for m in messages if m.chat_id is not None}
    return [chat_tl(world.groups[i]) for i in sorted(ids) if i in world.groups]


def message_updates(
    world: World, bot: Bot, message: StoredMessage, edit: bool = False, random_id: int | None = None
) -> types.Updates:
    """``Updates`` carrying one new (or edited) message, as pushed and as sendMedia answers."""
    update_cls = types.UpdateEditMessage if edit else types.UpdateNewMessage
    updates: list[types.TypeUpdate] = []
    if random_id is not None:
        updates.append(types.UpdateMessageID(id=message.id, random_id=random_id))
    updates.append(update_cls(message_tl(world, bot, message), pts=message.pts, pts_count=1))
    return types.Updates(
        updates=updates,
        users=peer_users(world, bot, [message]),
        chats=peer_chats(world, [message]),
        date=when(message.date),
        seq=0,
    )


_UPDATES_ID = types.Updates.CONSTRUCTOR_ID
MAX_BATCH = 100


@dataclass(slots=True)
class PushBatch:
    """Updates queued for one connection in one loop iteration, sent as one ``Updates``
    (as Telegram batches them): the users and chats they mention appear once."""

    updates: list[bytes] = field(default_factory=list)
    users: dict[int, bytes] = field(default_factory=dict)
    chats: dict[int, bytes] = field(default_factory=dict)

    def add(self, other: PushBatch) -> None:
        self.updates.extend(other.updates)
        self.users.update(other.users)
        self.chats.update(other.chats)

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                struct.pack("<I", _UPDATES_ID),
                vector(self.updates),
                vector(list(self.users.values())),
                vector(list(self.chats.values())),
                struct.pack("<ii", int(time.time()), 0),
            )
        )


def updates_push(
    world: World, bot: Bot, updates: list[Any], users: list[Bot | User], chats: list[Group]
) -> PushBatch:
    """A push of arbitrary updates naming these users and chats."""
    return PushBatch(
        [bytes(u) for u in updates],
        {u.id: bytes(user_tl(world, bot, u)) for u in users},
        {c.id: bytes(chat_tl(c)) for c in chats},
    )


def message_push(world: World, bot: Bot, message: StoredMessage, edit: bool = False) -> PushBatch:
    """The push of one new (or edited) message, ready to merge with others."""
    update_cls = types.UpdateEditMessage if edit else types.UpdateNewMessage
    update = update_cls(message_tl(world, bot, message), pts=message.pts, pts_count=1)
    return PushBatch(
        [bytes(update)],
        {u.id: bytes(u) for u in peer_users(world, bot, [message])},
        {c.id: bytes(c) for c in peer_chats(world, [message])},
    )
