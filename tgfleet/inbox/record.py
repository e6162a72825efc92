"""Recording incoming updates: what an envelope stores, idempotently, and what handlers see.

``record_update`` stores what an envelope brings (entities, the sender, the message):
its dedupe key goes into ``processed_updates`` in the same transaction, so a replayed
update changes nothing. The statements the ordered drain (``tgfleet.inbox.drain``) runs
on the hot path live here too, beside the rows they read and write.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import func, text
from sqlalchemy import update as update_stmt
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session
from telethon.extensions import BinaryReader
from telethon.tl import types

from tgfleet.db import TgUser
from tgfleet.db.entities import rename_user, upsert_entities
from tgfleet.db.prepared import Call, Prepared
from tgfleet.platform.envelope import (
    CHAT_KINDS,
    KIND_BOT_STOPPED,
    KIND_CALLBACK,
    KIND_CHAT_MEMBER,
    KIND_MESSAGE,
    KIND_USER_NAME,
    Envelope,
)

#: How long a message waits for its predecessor before its handlers run anyway (and a
#: ``chain_gap`` dead letter says so). A message a dead worker held comes back within
#: about 10 s (``platform/handoff.py``), well inside it.
CHAIN_STALL_S = 30.0


@dataclass
class InboundMessage:
    """One stored inbound message, as handlers see it."""

    bot_id: int
    chat_id: int
    sender_id: int | None
    tg_message_id: int
    text: str
    #: The message; a MessageService for a member joining or leaving (``chat_member``).
    message: types.Message | types.MessageService | None
    kind: str
    #: The raw update of a chat update that is not a message: UpdateBotCallbackQuery for
    #: a button press, UpdateBotStopped for a block or unblock, UpdateChatParticipant or
    #: UpdateChannelParticipant for a membership change the bot was told of on its qts.
    update: Any = None
    #: The sender's conversation state in this chat as the drain read it with the message
    #: (``conversation_states``; expired or not: ``tgfleet.bots.fsm`` decides), valid only
    #: when ``state_loaded``. Otherwise unknown, and ``ctx.state`` reads it on first use.
    state: str | None = None
    state_data: dict[str, Any] | None = None
    state_expires_at: datetime | None = None
    state_loaded: bool = False
    #: The sender's language as the drain read it: the one chosen in the bot
    #: (``tg_users.chosen_lang``), else Telegram's ``language_code``.
    user_lang: str | None = None

    @property
    def photo(self) -> types.Photo | None:
        media = getattr(self.message, "media", None)
        if isinstance(media, types.MessageMediaPhoto) and isinstance(media.photo, types.Photo):
            return media.photo
        return None


class HandlerEffects(Protocol):
    """What a handler run asks to be written with the processed mark (``tgfleet.bots``'s
    ``Effects``): statements to run after ``first``, and a hook given their rows."""

    def calls(self, first: Sequence[Call] = ()) -> list[Call]: ...

    def written(self, session: Session, rows: Sequence[Any]) -> None: ...


#: handle(session, inbound) -> the effects to write with the processed mark (or None);
#: raises to dead-letter the message.
Handler = Callable[[Session, InboundMessage], HandlerEffects | None]


# The hot path is raw SQL on purpose: every message goes through it, and each of these
# statements replaces two or three ORM round trips (claim + insert, select + join,
# update + upsert). Statement count is what bounds a worker's updates/s.
CLAIM = text(
    "INSERT INTO processed_updates (bot_id, dedupe_key) VALUES (:bot, :key) "
    "ON CONFLICT DO NOTHING RETURNING 1"
)
CLAIM_AND_STORE = text(
    "WITH claim AS (INSERT INTO processed_updates (bot_id, dedupe_key) VALUES (:bot, :key) "
    "ON CONFLICT DO NOTHING RETURNING 1) "
    "INSERT INTO messages (bot_id, direction, chat_id, sender_id, tg_message_id, text, payload) "
    "SELECT :bot, 'in', :chat, :sender, :msg, :text, CAST(:payload AS jsonb) FROM claim "
    "RETURNING id"
)


#: What the drain reads with each waiting message besides the message itself: the
#: chat's conversation row (order), the sender's conversation state (``tgfleet.bots.fsm``)
#: and language (``tg_users``: the one chosen in the bot, else Telegram's), each a LEFT
#: JOIN by primary key. The sender is the user a state belongs to (the chat itself when a
#: message has none, as ``ctx.user_id``).
_WITH_MESSAGE = (
    "c.chat_id IS NOT NULL AS has_conversation, c.last_processed_message_id, "
    "s.state, s.data AS state_data, s.expires_at AS state_expires_at, "
    "COALESCE(u.chosen_lang, u.language_code) AS user_lang "
)


def _joins(bot: str, chat: str, row: str) -> str:
    return (
        f"LEFT JOIN conversations c ON c.bot_id = {bot} AND c.chat_id = {chat} "
        f"LEFT JOIN conversation_states s ON s.bot_id = {bot} AND s.chat_id = {chat} "
        f"AND s.user_id = COALESCE({row}.sender_id, {chat}) "
        f"LEFT JOIN tg_users u ON u.bot_id = {bot} AND u.user_id = {row}.sender_id "
    )


def _order(row: str) -> str:
    """The order a chat's waiting rows are handled in: by message id; a row placed after a
    message (a press, a block, a participant update: it has a key and that message's id)
    after the message itself, whichever was recorded first; then as recorded."""
    return f"{row}.tg_message_id, ({row}.payload ->> 'key') IS NOT NULL, {row}.id"


#: Claim + store + the chat's first two waiting messages (the stored one included: a
#: statement does not see its own inserts, hence the UNION), in one round trip. A new
#: name whenever the SQL changes: a pooled connection may hold the old one prepared.
RECORD_AND_NEXT = Prepared(
    "tgfleet_inbox_record_next_v4",
    ("bigint", "text", "bigint", "bigint", "bigint", "text", "jsonb"),
    "WITH claim AS (INSERT INTO processed_updates (bot_id, dedupe_key) VALUES ($1, $2) "
    "ON CONFLICT DO NOTHING RETURNING 1), "
    "stored AS (INSERT INTO messages (bot_id, direction, chat_id, sender_id, tg_message_id, "
    "text, payload) SELECT $1, 'in', $3, $4, $5, $6, $7 FROM claim "
    "RETURNING id, created_at, sender_id, tg_message_id, text, payload), "
    "waiting AS (SELECT * FROM stored UNION ALL (SELECT m.id, m.created_at, m.sender_id, "
    "m.tg_message_id, m.text, m.payload FROM messages m WHERE m.bot_id = $1 "
    "AND m.chat_id = $3 AND m.direction = 'in' AND m.processed_at IS NULL "
    f"ORDER BY {_order('m')} LIMIT 2)) "
    "SELECT (SELECT count(*) FROM stored) AS fresh, w.id, w.created_at, w.sender_id, "
    "w.tg_message_id, w.text, (w.payload ->> 'prev')::bigint AS prev, "
    "w.payload ->> 'kind' AS kind, w.payload ->> 'tl' AS tl, w.payload -> 'retry' AS retry, "
    + _WITH_MESSAGE
    + "FROM (SELECT 1) AS one "
    f"LEFT JOIN (SELECT * FROM waiting ORDER BY {_order('waiting')} LIMIT 2) AS w ON true "
    + _joins("$1", "$3", "w")
    + f"ORDER BY {_order('w')}",
)
#: The chat's first two waiting messages, as RECORD_AND_NEXT gives them.
NEXT_WAITING = Prepared(
    "tgfleet_inbox_next_v4",
    ("bigint", "bigint"),
    "SELECT 0 AS fresh, m.id, m.created_at, m.sender_id, m.tg_message_id, m.text, "
    "(m.payload ->> 'prev')::bigint AS prev, m.payload ->> 'kind' AS kind, "
    "m.payload ->> 'tl' AS tl, m.payload -> 'retry' AS retry, "
    + _WITH_MESSAGE
    + "FROM messages m "
    + _joins("$1", "$2", "m")
    + "WHERE m.bot_id = $1 AND m.chat_id = $2 AND m.direction = 'in' "
    f"AND m.processed_at IS NULL ORDER BY {_order('m')} LIMIT 2",
)
NEW_CONVERSATION = Prepared(
    "tgfleet_inbox_new_conversation",
    ("bigint", "bigint"),
    "INSERT INTO conversations (bot_id, chat_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
)
#: $1 bot, $2 chat, $3 message row id, $4 its created_at, $5 its Telegram message id.
MARK_PROCESSED = Prepared(
    "tgfleet_inbox_mark_processed",
    ("bigint", "bigint", "bigint", "timestamptz", "bigint"),
    "WITH done AS (UPDATE messages SET processed_at = now() "
    "WHERE bot_id = $1 AND created_at = $4 AND id = $3) "
    "UPDATE conversations SET messages_in = messages_in + 1, "
    "last_processed_message_id = GREATEST(COALESCE(last_processed_message_id, 0), $5), "
    "last_message_at = $4, updated_at = now() "
    "WHERE bot_id = $1 AND chat_id = $2",
)


def message_params(envelope: Envelope) -> tuple[Any, ...]:
    """The columns of an envelope's inbound message row, in RECORD_AND_NEXT's order."""
    if envelope.msg_id is None:  # a press, a block, a participant update
        return _update_params(envelope)
    message = envelope.update.message
    sender = getattr(message.from_id, "user_id", None) or (
        envelope.chat_id if envelope.chat_id is not None and envelope.chat_id > 0 else None
    )
    payload = {
        "kind": envelope.kind,
        "prev": envelope.prev_id,
        "tl": base64.b64encode(bytes(message)).decode(),
    }
    return (
        envelope.bot_id,
        envelope.key,
        envelope.chat_id,
        sender,
        envelope.msg_id,
        getattr(message, "message", None) or "",  # a service message has no text
        json.dumps(payload),
    )


def _update_params(envelope: Envelope) -> tuple[Any, ...]:
    """A button press, a block/unblock or a participant update, stored as an inbound row
    of its chat so that it is handled in order with the chat's messages. It has no message
    id of its own: its place is after the last message the listener published for the
    chat (``prev``). Its sender is the user who did it (a participant update's actor)."""
    update = envelope.update
    text_value = ""
    if isinstance(update, types.UpdateBotCallbackQuery):
        text_value = (update.data or b"").decode("utf-8", "replace")
    payload = {
        "kind": envelope.kind,
        "prev": envelope.prev_id,
        "key": envelope.key,
        "tl": base64.b64encode(bytes(update)).decode(),
    }
    return (
        envelope.bot_id,
        envelope.key,
        envelope.chat_id,
        int(getattr(update, "actor_id", None) or update.user_id),
        envelope.prev_id or 0,
        text_value,
        json.dumps(payload),
    )


def record_update(session: Session, envelope: Envelope) -> bool:
    """Store the envelope's entities and message; False if it was seen before."""
    upsert_entities(session, envelope.bot_id, envelope.entities)
    if is_message(envelope):
        bot, key, chat, sender, msg, body, payload = message_params(envelope)
        stored = session.execute(
            CLAIM_AND_STORE,
            {
                "bot": bot,
                "key": key,
                "chat": chat,
                "sender": sender,
                "msg": msg,
                "text": body,
                "payload": payload,
            },
        ).first()
        return stored is not None
    claimed = session.execute(CLAIM, {"bot": envelope.bot_id, "key": envelope.key}).first()
    if claimed is None:
        return False
    if envelope.kind == KIND_USER_NAME and isinstance(envelope.update, types.UpdateUserName):
        apply_name_change(session, envelope.bot_id, envelope.update)
    return True


def is_message(envelope: Envelope) -> bool:
    """True for an update that belongs to a chat and runs its handlers in order."""
    return envelope.kind in CHAT_KINDS and envelope.chat_id is not None


def apply_bot_stopped(session: Session, bot_id: int, update: types.UpdateBotStopped) -> None:
    """A user blocked (``stopped``) or unblocked the bot: sends and broadcasts skip users
    marked blocked. Run when the update is handled, so changes apply in order, once."""
    stmt = insert(TgUser).values(bot_id=bot_id, user_id=update.user_id, is_blocked=update.stopped)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[TgUser.bot_id, TgUser.user_id],
            set_={"is_blocked": stmt.excluded.is_blocked, "last_seen_at": func.now()},
        )
    )


def apply_name_change(session: Session, bot_id: int, update: types.UpdateUserName) -> None:
    """A user changed their Telegram names: keep ``tg_users`` (and the entity store) current."""
    active = [u.username for u in update.usernames or () if getattr(u, "active", True)]
    username = active[0] if active else None
    session.execute(
        update_stmt(TgUser)
        .where(TgUser.bot_id == bot_id, TgUser.user_id == update.user_id)
        .values(
            first_name=update.first_name,
            last_name=update.last_name,
            username=username,
            last_seen_at=func.now(),
        )
    )
    rename_user(session, bot_id, update.user_id, username)


def _sender_state(row: Any) -> dict[str, Any]:
    """InboundMessage's state and language fields from a drain row (none: not read)."""
    if not hasattr(row, "state_data"):
        return {}
    return {
        "state": row.state,
        "state_data": row.state_data,
        "state_expires_at": row.state_expires_at,
        "state_loaded": True,
        "user_lang": row.user_lang,
    }


def inbound_from_row(
    bot_id: int, chat_id: int, row: Any, envelope: Envelope | None = None
) -> InboundMessage:
    message: types.Message | types.MessageService | None = None
    kind = str(row.kind or KIND_MESSAGE)
    stored = None
    if kind in (KIND_CALLBACK, KIND_BOT_STOPPED, KIND_CHAT_MEMBER):
        stored = BinaryReader(base64.b64decode(row.tl)).tgread_object()
    if stored is not None and not isinstance(stored, types.MessageService):
        update = stored  # a chat update without a message of its own
        return InboundMessage(
            bot_id=bot_id,
            chat_id=chat_id,
            sender_id=row.sender_id,
            # A press names the message its button is on.
            tg_message_id=int(getattr(update, "msg_id", None) or row.tg_message_id or 0),
            text=row.text or "",
            message=None,
            kind=kind,
            update=update,
            **_sender_state(row),
        )
    if stored is not None:
        message = stored  # a member's service message
    elif (
        envelope is not None
        and envelope.msg_id == row.tg_message_id
        and envelope.kind == row.kind
        and isinstance(envelope.update.message, types.Message)
    ):
        message = envelope.update.message  # the message just recorded: no need to parse it
    elif isinstance(row.tl, str):
        parsed = BinaryReader(base64.b64decode(row.tl)).tgread_object()
        if isinstance(parsed, types.Message):
            message = parsed
    return InboundMessage(
        bot_id=bot_id,
        chat_id=chat_id,
        sender_id=row.sender_id,
        tg_message_id=int(row.tg_message_id or 0),
        text=row.text or "",
        message=message,
        kind=kind,
        **_sender_state(row),
    )
