"""The update envelope: what a listener publishes for each Telegram update.

A compact JSON object (Celery's serializer is JSON only)::

    {"v": 1, "bot": 42, "key": "m:1001:17", "kind": "message",
     "tl": "<base64 of the raw TL update>", "chat": 1001, "msg": 17, "prev": 16,
     "pts": 120, "date": 1700000000, "ents": [[type, id, access_hash, username,
     first_name, last_name, lang], ...], "lease": 3, "tp": "00-<trace>-<span>-01"}

``key`` is the dedupe key; ``prev`` is the previous inbound message id this
listener published for the same chat (the worker uses it to run handlers in
message order); ``ents`` are the users/chats that came with the update, with the
access hashes of *this bot's* account; ``tp``, when traces are on, is the W3C
traceparent of the listener's publish (``tgfleet.platform.tracing``). Decoding
validates everything and raises ``EnvelopeError`` with a reason; the worker
dead-letters such envelopes.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from telethon import utils
from telethon.extensions import BinaryReader
from telethon.tl import types
from telethon.tl.tlobject import TLObject

from tgfleet.platform.errors import TgfleetError
from tgfleet.platform.tracing import TRACEPARENT

SCHEMA_VERSION = 1
#: Update kinds tgfleet handles; anything else is recorded as "other".
KIND_MESSAGE = "message"
KIND_EDIT = "edit"
KIND_USER_NAME = "user_name"
#: A button press (UpdateBotCallbackQuery).
KIND_CALLBACK = "callback"
#: A user blocked or unblocked the bot (UpdateBotStopped).
KIND_BOT_STOPPED = "bot_stopped"
#: Someone joined or left a group: the service message about it (MessageService with a
#: member action, a message of the group), or a participant update (UpdateChatParticipant,
#: UpdateChannelParticipant: on the bot's qts sequence, like UpdateBotStopped).
KIND_CHAT_MEMBER = "chat_member"
KIND_OTHER = "other"
KINDS = (
    KIND_MESSAGE,
    KIND_EDIT,
    KIND_USER_NAME,
    KIND_CALLBACK,
    KIND_BOT_STOPPED,
    KIND_CHAT_MEMBER,
    KIND_OTHER,
)
#: Kinds that belong to a chat and run its handlers, in order with its messages (a
#: user's block or unblock belongs to the user's private chat).
CHAT_KINDS = (KIND_MESSAGE, KIND_EDIT, KIND_CALLBACK, KIND_BOT_STOPPED, KIND_CHAT_MEMBER)
#: Chat kinds whose place is after the last message the listener published for the chat
#: (``prev``); those with a message id of their own (a message, a service message) are
#: then the chat's last. An edit takes the place of the message it edits.
ORDERED_KINDS = (KIND_MESSAGE, KIND_CALLBACK, KIND_BOT_STOPPED, KIND_CHAT_MEMBER)

_MESSAGE_UPDATES = types.UpdateNewMessage
_EDIT_UPDATES = types.UpdateEditMessage
_NAME_UPDATES = types.UpdateUserName
#: Service-message actions that are a member joining or leaving.
MEMBER_ACTIONS = (
    types.MessageActionChatAddUser,
    types.MessageActionChatDeleteUser,
    types.MessageActionChatJoinedByLink,
    types.MessageActionChatJoinedByRequest,
)
_PARTICIPANT_UPDATES = (types.UpdateChatParticipant, types.UpdateChannelParticipant)


class EnvelopeError(TgfleetError):
    """An envelope that cannot be handled; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class EntityRecord:
    """A peer as this bot's account sees it."""

    peer_type: str  # "user" | "chat" | "channel"
    peer_id: int
    access_hash: int | None
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    lang: str | None = None

    def to_json(self) -> list[Any]:
        return [
            self.peer_type,
            self.peer_id,
            self.access_hash,
            self.username,
            self.first_name,
            self.last_name,
            self.lang,
        ]


@dataclass(frozen=True)
class Envelope:
    bot_id: int
    key: str
    kind: str
    update: TLObject
    chat_id: int | None = None
    msg_id: int | None = None
    prev_id: int | None = None
    pts: int | None = None
    date: int | None = None
    entities: tuple[EntityRecord, ...] = field(default_factory=tuple)
    lease: int | None = None
    trace_parent: str | None = None


def entity_records(entities: Any) -> list[EntityRecord]:
    """EntityRecords from Telethon's users/chats (skips min entities: their hash is useless)."""
    records: list[EntityRecord] = []
    for entity in entities:
        if isinstance(entity, types.User):
            if entity.min or not entity.access_hash:
                continue
            records.append(
                EntityRecord(
                    "user",
                    entity.id,
                    entity.access_hash,
                    entity.username,
                    entity.first_name,
                    entity.last_name,
                    entity.lang_code,
                )
            )
        elif isinstance(entity, types.Chat):
            records.append(EntityRecord("chat", entity.id, None, None, entity.title))
        elif isinstance(entity, types.Channel):
            if entity.min or not entity.access_hash:
                continue
            records.append(
                EntityRecord(
                    "channel",
                    entity.id,
                    entity.access_hash,
                    entity.username,
                    entity.title,
                )
            )
    return records


def classify(update: TLObject) -> tuple[str, str, int | None, int | None]:
    """(kind, dedupe key, chat id, message id) of a raw update."""
    if isinstance(update, _MESSAGE_UPDATES | _EDIT_UPDATES) and isinstance(
        update.message, types.Message
    ):
        message = update.message
        chat_id = utils.get_peer_id(message.peer_id)
        kind = KIND_MESSAGE if isinstance(update, _MESSAGE_UPDATES) else KIND_EDIT
        suffix = ""
        if kind == KIND_EDIT:
            suffix = f":{message.edit_date.timestamp():.0f}" if message.edit_date else ":e"
        return kind, f"{kind[0]}:{chat_id}:{message.id}{suffix}", chat_id, message.id
    if isinstance(update, types.UpdateBotCallbackQuery):
        return KIND_CALLBACK, f"c:{update.query_id}", utils.get_peer_id(update.peer), None
    if isinstance(update, types.UpdateBotStopped):
        # One key per change: a user who blocks, unblocks and blocks again gives three.
        key = f"s:{update.user_id}:{update.qts}:{int(update.stopped)}"
        return KIND_BOT_STOPPED, key, int(update.user_id), None
    if is_member_message(update):
        message = update.message
        chat_id = utils.get_peer_id(message.peer_id)
        return KIND_CHAT_MEMBER, f"j:{chat_id}:{message.id}", chat_id, message.id
    if isinstance(update, _PARTICIPANT_UPDATES):
        chat_id = participant_chat_id(update)
        joined = int(update.new_participant is not None)
        key = f"p:{chat_id}:{update.user_id}:{update.qts}:{joined}"
        return KIND_CHAT_MEMBER, key, chat_id, None
    raw = bytes(update)
    digest = hashlib.blake2b(raw, digest_size=12).hexdigest()
    if isinstance(update, _NAME_UPDATES):
        return KIND_USER_NAME, f"n:{update.user_id}:{digest}", None, None
    return KIND_OTHER, f"o:{digest}", None, None


def is_member_message(update: TLObject) -> TypeGuard[types.UpdateNewMessage]:
    """True for a new service message of a member joining or leaving a group."""
    return (
        isinstance(update, _MESSAGE_UPDATES)
        and isinstance(update.message, types.MessageService)
        and isinstance(update.message.action, MEMBER_ACTIONS)
    )


def participant_chat_id(
    update: types.UpdateChatParticipant | types.UpdateChannelParticipant,
) -> int:
    """The marked chat id of a participant update (``-id`` for a basic group, ``-100id``
    for a supergroup or channel)."""
    if isinstance(update, types.UpdateChatParticipant):
        return int(utils.get_peer_id(types.PeerChat(update.chat_id)))
    return int(utils.get_peer_id(types.PeerChannel(update.channel_id)))


def encode(
    bot_id: int,
    update: TLObject,
    entities: Any = (),
    *,
    prev_id: int | None = None,
    lease: int | None = None,
    trace_parent: str | None = None,
) -> dict[str, Any]:
    """The JSON envelope for one update (what ``tgfleet.updates.handle`` receives)."""
    kind, key, chat_id, msg_id = classify(update)
    envelope: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "bot": bot_id,
        "key": key,
        "kind": kind,
        "tl": base64.b64encode(bytes(update)).decode(),
        "ents": [record.to_json() for record in entity_records(entities)],
    }
    optional = {
        "chat": chat_id,
        "msg": msg_id,
        "prev": prev_id,
        "pts": getattr(update, "pts", None),
        "lease": lease,
        "tp": trace_parent,
    }
    message = getattr(update, "message", None)
    if isinstance(message, types.Message | types.MessageService) and message.date is not None:
        optional["date"] = int(message.date.timestamp())
    envelope.update({k: v for k, v in optional.items() if v is not None})
    return envelope


def _int(payload: dict[str, Any], name: str, *, required: bool = False) -> int | None:
    value = payload.get(name)
    if value is None:
        if required:
            raise EnvelopeError(f"envelope field {name!r} is missing")
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise EnvelopeError(f"envelope field {name!r} must be an integer, got {value!r:.40}")
    return value


def decode(payload: Any) -> Envelope:
    """Validate and decode an envelope; raises EnvelopeError with the reason."""
    if not isinstance(payload, dict):
        raise EnvelopeError(f"envelope must be a JSON object, got {type(payload).__name__}")
    version = payload.get("v")
    if version != SCHEMA_VERSION:
        raise EnvelopeError(
            f"unknown envelope schema version {version!r} (this worker reads {SCHEMA_VERSION})"
        )
    bot_id = _int(payload, "bot", required=True)
    assert bot_id is not None
    key, kind, tl = payload.get("key"), payload.get("kind"), payload.get("tl")
    if not isinstance(key, str) or not 0 < len(key) <= 200:
        raise EnvelopeError("envelope field 'key' must be a non-empty string of <= 200 chars")
    if kind not in KINDS:
        raise EnvelopeError(f"unknown update kind {kind!r}")
    if not isinstance(tl, str):
        raise EnvelopeError("envelope field 'tl' must be base64 text")
    try:
        update = BinaryReader(base64.b64decode(tl, validate=True)).tgread_object()
    except Exception as exc:  # BinaryReader raises many types on garbage
        raise EnvelopeError(f"envelope field 'tl' is not a valid TL object: {exc!r:.120}") from None
    if not isinstance(update, TLObject):
        raise EnvelopeError(f"envelope field 'tl' decodes to {type(update).__name__}, not TL")
    expected_kind = classify(update)[0]
    if expected_kind != kind:
        raise EnvelopeError(f"envelope says kind {kind!r} but the update is {expected_kind!r}")
    trace_parent = payload.get("tp")
    if trace_parent is not None and not (
        isinstance(trace_parent, str) and TRACEPARENT.match(trace_parent)
    ):
        raise EnvelopeError(f"envelope field 'tp' is not a W3C traceparent: {trace_parent!r:.80}")
    return Envelope(
        bot_id=bot_id,
        key=key,
        kind=kind,
        update=update,
        chat_id=_int(payload, "chat"),
        msg_id=_int(payload, "msg"),
        prev_id=_int(payload, "prev"),
        pts=_int(payload, "pts"),
        date=_int(payload, "date"),
        entities=tuple(entity_from_json(item) for item in payload.get("ents") or ()),
        lease=_int(payload, "lease"),
        trace_parent=trace_parent,
    )


def _is_int(value: Any) -> bool:
    """A JSON integer (a boolean is an ``int`` to Python, not to the envelope)."""
    return isinstance(value, int) and not isinstance(value, bool)


def entity_from_json(item: Any) -> EntityRecord:
    """An EntityRecord from its JSON list form; EnvelopeError if malformed."""
    if not isinstance(item, list) or len(item) != 7:
        raise EnvelopeError(f"envelope entity must be a 7-item list, got {item!r:.80}")
    peer_type, peer_id, access_hash, *names = item
    if peer_type not in ("user", "chat", "channel"):
        raise EnvelopeError(f"unknown entity type {peer_type!r}")
    if not _is_int(peer_id) or (access_hash is not None and not _is_int(access_hash)):
        raise EnvelopeError(f"entity id and access hash must be integers: {item!r:.80}")
    if any(n is not None and not isinstance(n, str) for n in names):
        raise EnvelopeError(f"entity names must be strings: {item!r:.80}")
    return EntityRecord(peer_type, peer_id, access_hash, *names)
