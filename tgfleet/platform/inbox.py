"""The inbox: recording incoming updates and running the bots' handlers, in order, once.

``record_update`` stores what an envelope brings (entities, the sender, the message)
idempotently: its dedupe key goes into ``processed_updates`` in the same transaction,
so a replayed update changes nothing. ``drain_chat`` then runs the bot's handlers on
the chat's unprocessed inbound messages in message-id order, one transaction per
message under a per-chat advisory lock, marking each processed together with its
effects. Any number of workers, retries and crashes give each message's handlers
exactly one effect.

Order across workers: each envelope names the previous inbound message the listener
published for that chat (``prev``). A message whose predecessor has not been recorded
yet waits (the worker that records the predecessor drains both), unless it has waited
longer than ``CHAIN_STALL_S`` (the predecessor was dead-lettered, or a listener
restarted), then it runs anyway.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy import update as update_stmt
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from telethon.extensions import BinaryReader
from telethon.tl import types

from tgfleet.db import (
    Conversation,
    DeadUpdate,
    Entity,
    Message,
    MessageDirection,
    PeerType,
    ProcessedUpdate,
    TgUser,
    session_scope,
)
from tgfleet.listeners.envelope import (
    KIND_EDIT,
    KIND_MESSAGE,
    KIND_USER_NAME,
    EntityRecord,
    Envelope,
)
from tgfleet.platform.settings import Settings

log = logging.getLogger(__name__)

#: How long a message waits for its predecessor before its handlers run anyway.
CHAIN_STALL_S = 10.0


@dataclass
class InboundMessage:
    """One stored inbound message, as handlers see it."""

    bot_id: int
    chat_id: int
    sender_id: int | None
    tg_message_id: int
    text: str
    message: types.Message | None
    kind: str

    @property
    def photo(self) -> types.Photo | None:
        media = getattr(self.message, "media", None)
        if isinstance(media, types.MessageMediaPhoto) and isinstance(media.photo, types.Photo):
            return media.photo
        return None


#: handle(session, inbound) -> None; raises to dead-letter the message.
Handler = Callable[[Session, InboundMessage], None]


def chat_lock_key(bot_id: int, chat_id: int) -> int:
    """A signed 64-bit advisory-lock key for one chat of one bot."""
    digest = hashlib.blake2b(f"{bot_id}:{chat_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def record_update(session: Session, envelope: Envelope) -> bool:
    """Store the envelope's entities and message; False if it was seen before."""
    upsert_entities(session, envelope.bot_id, envelope.entities)
    claimed = session.execute(
        insert(ProcessedUpdate)
        .values(bot_id=envelope.bot_id, dedupe_key=envelope.key)
        .on_conflict_do_nothing()
        .returning(ProcessedUpdate.dedupe_key)
    ).first()
    if claimed is None:
        return False
    if envelope.kind == KIND_USER_NAME and isinstance(envelope.update, types.UpdateUserName):
        apply_name_change(session, envelope.bot_id, envelope.update)
    if envelope.kind in (KIND_MESSAGE, KIND_EDIT) and envelope.chat_id is not None:
        message = envelope.update.message
        sender = getattr(message.from_id, "user_id", None) or (
            envelope.chat_id if envelope.chat_id > 0 else None
        )
        session.execute(
            insert(Message).values(
                bot_id=envelope.bot_id,
                direction=MessageDirection.IN,
                chat_id=envelope.chat_id,
                sender_id=sender,
                tg_message_id=envelope.msg_id,
                text=message.message or "",
                payload={
                    "kind": envelope.kind,
                    "prev": envelope.prev_id,
                    "tl": base64.b64encode(bytes(message)).decode(),
                },
            )
        )
    return True


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
    session.execute(
        update_stmt(Entity)
        .where(
            Entity.bot_id == bot_id,
            Entity.peer_type == PeerType.USER,
            Entity.peer_id == update.user_id,
        )
        .values(username=username, updated_at=func.now())
    )


def upsert_entities(session: Session, bot_id: int, records: tuple[EntityRecord, ...]) -> None:
    """Entity store + tg_users from the peers an update brought (hashes are per account)."""
    if not records:
        return
    rows = [
        {
            "bot_id": bot_id,
            "peer_type": PeerType(r.peer_type),
            "peer_id": r.peer_id,
            "access_hash": r.access_hash,
            "username": r.username,
        }
        for r in {(r.peer_type, r.peer_id): r for r in records}.values()
    ]
    stmt = insert(Entity).values(rows)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Entity.bot_id, Entity.peer_type, Entity.peer_id],
            set_={
                "access_hash": stmt.excluded.access_hash,
                "username": stmt.excluded.username,
                "updated_at": func.now(),
            },
            where=text(
                "(entities.access_hash, entities.username) IS DISTINCT FROM "
                "(excluded.access_hash, excluded.username)"
            ),
        )
    )
    users = [
        {
            "bot_id": bot_id,
            "user_id": r.peer_id,
            "first_name": r.first_name,
            "last_name": r.last_name,
            "username": r.username,
            "language_code": r.lang,
        }
        for r in {r.peer_id: r for r in records if r.peer_type == "user"}.values()
    ]
    if users:
        ustmt = insert(TgUser).values(users)
        session.execute(
            ustmt.on_conflict_do_update(
                index_elements=[TgUser.bot_id, TgUser.user_id],
                set_={
                    "first_name": ustmt.excluded.first_name,
                    "last_name": ustmt.excluded.last_name,
                    "username": ustmt.excluded.username,
                    "language_code": func.coalesce(
                        ustmt.excluded.language_code, TgUser.language_code
                    ),
                    "last_seen_at": func.now(),
                },
            )
        )


@dataclass
class DrainResult:
    processed: int = 0
    dead: int = 0
    waiting: bool = False  # a message waits for its predecessor


def drain_chat(
    settings: Settings,
    bot_id: int,
    chat_id: int,
    handler: Handler,
    *,
    correlation_id: str | None = None,
    limit: int = 1000,
) -> DrainResult:
    """Run ``handler`` on the chat's unprocessed inbound messages, in order, once each."""
    result = DrainResult()
    while result.processed + result.dead < limit:
        with session_scope(settings, bot_id=bot_id, correlation_id=correlation_id) as session:
            outcome = _process_next(session, bot_id, chat_id, handler)
        if outcome is None:
            break
        if outcome == "wait":
            result.waiting = True
            break
        if outcome == "dead":
            result.dead += 1
        else:
            result.processed += 1
    return result


def _process_next(session: Session, bot_id: int, chat_id: int, handler: Handler) -> str | None:
    session.execute(select(func.pg_advisory_xact_lock(chat_lock_key(bot_id, chat_id))))
    conversation = _conversation(session, bot_id, chat_id)
    row = session.execute(
        select(Message)
        .where(
            Message.bot_id == bot_id,
            Message.chat_id == chat_id,
            Message.direction == MessageDirection.IN,
            Message.processed_at.is_(None),
        )
        .order_by(Message.tg_message_id, Message.id)
        .limit(1)
    ).scalar_one_or_none()
    if row is None:
        return None
    prev = (row.payload or {}).get("prev")
    last = conversation.last_processed_message_id
    if (
        prev is not None
        and (last is None or prev > last)
        and row.created_at > datetime.now(UTC) - timedelta(seconds=CHAIN_STALL_S)
    ):
        return "wait"
    inbound = _inbound(row)
    outcome = "ok"
    try:
        with session.begin_nested():
            handler(session, inbound)
    except DBAPIError:
        raise  # transient database trouble: the task retries the whole drain
    except Exception as exc:  # a handler bug must not block the chat: dead-letter it
        outcome = "dead"
        log.exception("handler failed on message %s of chat %s", row.tg_message_id, chat_id)
        session.add(
            DeadUpdate(
                bot_id=bot_id,
                dedupe_key=f"h:{chat_id}:{row.tg_message_id}",
                reason=f"handler error: {exc!r:.300}",
                payload={
                    "chat_id": chat_id,
                    "tg_message_id": row.tg_message_id,
                    "text": (row.text or "")[:1000],
                    "traceback": traceback.format_exc(limit=8)[-4000:],
                },
            )
        )
    session.execute(
        update_stmt(Message)
        .where(Message.bot_id == bot_id, Message.created_at == row.created_at, Message.id == row.id)
        .values(processed_at=func.now())
    )
    conversation.messages_in += 1
    conversation.last_processed_message_id = max(last or 0, row.tg_message_id or 0)
    conversation.last_message_at = row.created_at
    return outcome


def _conversation(session: Session, bot_id: int, chat_id: int) -> Conversation:
    session.execute(
        insert(Conversation).values(bot_id=bot_id, chat_id=chat_id).on_conflict_do_nothing()
    )
    return session.execute(
        select(Conversation)
        .where(Conversation.bot_id == bot_id, Conversation.chat_id == chat_id)
        .with_for_update()
    ).scalar_one()


def _inbound(row: Message) -> InboundMessage:
    payload: dict[str, Any] = row.payload or {}
    message: types.Message | None = None
    raw = payload.get("tl")
    if isinstance(raw, str):
        parsed = BinaryReader(base64.b64decode(raw)).tgread_object()
        if isinstance(parsed, types.Message):
            message = parsed
    return InboundMessage(
        bot_id=row.bot_id,
        chat_id=row.chat_id,
        sender_id=row.sender_id,
        tg_message_id=int(row.tg_message_id or 0),
        text=row.text or "",
        message=message,
        kind=str(payload.get("kind", KIND_MESSAGE)),
    )
