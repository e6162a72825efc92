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
import json
import logging
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, func, select, text
from sqlalchemy import update as update_stmt
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session
from telethon.extensions import BinaryReader
from telethon.tl import types

from tgfleet.db import (
    DeadUpdate,
    Entity,
    Message,
    MessageDirection,
    PeerType,
    TgUser,
    session_scope,
)
from tgfleet.db.prepared import Prepared, execute, execute_batch
from tgfleet.db.session import context_sent_with
from tgfleet.platform.envelope import (
    KIND_EDIT,
    KIND_MESSAGE,
    KIND_USER_NAME,
    EntityRecord,
    Envelope,
)
from tgfleet.platform.settings import Settings

if TYPE_CHECKING:
    from tgfleet.bots.effects import Effects

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


#: handle(session, inbound) -> the effects to write with the processed mark (or None);
#: raises to dead-letter the message.
Handler = Callable[[Session, InboundMessage], "Effects | None"]


def chat_lock_key(bot_id: int, chat_id: int) -> int:
    """A signed 64-bit advisory-lock key for one chat of one bot."""
    digest = hashlib.blake2b(f"{bot_id}:{chat_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# The hot path is raw SQL on purpose: every message goes through it, and each of these
# statements replaces two or three ORM round trips (claim + insert, select + join,
# update + upsert). Statement count is what bounds a worker's updates/s.
_CLAIM = text(
    "INSERT INTO processed_updates (bot_id, dedupe_key) VALUES (:bot, :key) "
    "ON CONFLICT DO NOTHING RETURNING 1"
)
_CLAIM_AND_STORE = text(
    "WITH claim AS (INSERT INTO processed_updates (bot_id, dedupe_key) VALUES (:bot, :key) "
    "ON CONFLICT DO NOTHING RETURNING 1) "
    "INSERT INTO messages (bot_id, direction, chat_id, sender_id, tg_message_id, text, payload) "
    "SELECT :bot, 'in', :chat, :sender, :msg, :text, CAST(:payload AS jsonb) FROM claim "
    "RETURNING id"
)


#: Claim + store + the chat's first two waiting messages (the stored one included: a
#: statement does not see its own inserts, hence the UNION), in one round trip.
_RECORD_AND_NEXT = Prepared(
    "tgfleet_inbox_record_next",
    ("bigint", "text", "bigint", "bigint", "bigint", "text", "jsonb"),
    "WITH claim AS (INSERT INTO processed_updates (bot_id, dedupe_key) VALUES ($1, $2) "
    "ON CONFLICT DO NOTHING RETURNING 1), "
    "stored AS (INSERT INTO messages (bot_id, direction, chat_id, sender_id, tg_message_id, "
    "text, payload) SELECT $1, 'in', $3, $4, $5, $6, $7 FROM claim "
    "RETURNING id, created_at, sender_id, tg_message_id, text, payload), "
    "waiting AS (SELECT * FROM stored UNION ALL (SELECT m.id, m.created_at, m.sender_id, "
    "m.tg_message_id, m.text, m.payload FROM messages m WHERE m.bot_id = $1 "
    "AND m.chat_id = $3 AND m.direction = 'in' AND m.processed_at IS NULL "
    "ORDER BY m.tg_message_id, m.id LIMIT 2)) "
    "SELECT (SELECT count(*) FROM stored) AS fresh, w.id, w.created_at, w.sender_id, "
    "w.tg_message_id, w.text, (w.payload ->> 'prev')::bigint AS prev, "
    "w.payload ->> 'kind' AS kind, w.payload ->> 'tl' AS tl, "
    "c.chat_id IS NOT NULL AS has_conversation, c.last_processed_message_id "
    "FROM (SELECT 1) AS one "
    "LEFT JOIN (SELECT * FROM waiting ORDER BY tg_message_id, id LIMIT 2) AS w ON true "
    "LEFT JOIN conversations c ON c.bot_id = $1 AND c.chat_id = $3 "
    "ORDER BY w.tg_message_id, w.id",
)
#: The chat's first two waiting messages, as _RECORD_AND_NEXT gives them.
_NEXT = Prepared(
    "tgfleet_inbox_next",
    ("bigint", "bigint"),
    "SELECT 0 AS fresh, m.id, m.created_at, m.sender_id, m.tg_message_id, m.text, "
    "(m.payload ->> 'prev')::bigint AS prev, m.payload ->> 'kind' AS kind, "
    "m.payload ->> 'tl' AS tl, "
    "c.chat_id IS NOT NULL AS has_conversation, c.last_processed_message_id "
    "FROM messages m LEFT JOIN conversations c ON c.bot_id = m.bot_id AND c.chat_id = m.chat_id "
    "WHERE m.bot_id = $1 AND m.chat_id = $2 AND m.direction = 'in' "
    "AND m.processed_at IS NULL ORDER BY m.tg_message_id, m.id LIMIT 2",
)
_NEW_CONVERSATION = Prepared(
    "tgfleet_inbox_new_conversation",
    ("bigint", "bigint"),
    "INSERT INTO conversations (bot_id, chat_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
)
#: $1 bot, $2 chat, $3 message row id, $4 its created_at, $5 its Telegram message id.
_MARK_PROCESSED = Prepared(
    "tgfleet_inbox_mark_processed",
    ("bigint", "bigint", "bigint", "timestamptz", "bigint"),
    "WITH done AS (UPDATE messages SET processed_at = now() "
    "WHERE bot_id = $1 AND created_at = $4 AND id = $3) "
    "UPDATE conversations SET messages_in = messages_in + 1, "
    "last_processed_message_id = GREATEST(COALESCE(last_processed_message_id, 0), $5), "
    "last_message_at = $4, updated_at = now() "
    "WHERE bot_id = $1 AND chat_id = $2",
)


def _message_params(envelope: Envelope) -> tuple[Any, ...]:
    """The columns of an envelope's inbound message row, in _RECORD_AND_NEXT's order."""
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
        message.message or "",
        json.dumps(payload),
    )


def record_update(session: Session, envelope: Envelope) -> bool:
    """Store the envelope's entities and message; False if it was seen before."""
    upsert_entities(session, envelope.bot_id, envelope.entities)
    if _is_message(envelope):
        bot, key, chat, sender, msg, body, payload = _message_params(envelope)
        stored = session.execute(
            _CLAIM_AND_STORE,
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
    claimed = session.execute(_CLAIM, {"bot": envelope.bot_id, "key": envelope.key}).first()
    if claimed is None:
        return False
    if envelope.kind == KIND_USER_NAME and isinstance(envelope.update, types.UpdateUserName):
        apply_name_change(session, envelope.bot_id, envelope.update)
    return True


def _is_message(envelope: Envelope) -> bool:
    return envelope.kind in (KIND_MESSAGE, KIND_EDIT) and envelope.chat_id is not None


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


#: Peers written recently by this process: (bot, type, id) -> (record, when). Unchanged
#: peers seen within ENTITY_FRESH_S are not written again (one user, many messages).
_recent: OrderedDict[tuple[int, str, int], tuple[EntityRecord, float]] = OrderedDict()
ENTITY_FRESH_S = 60.0
_RECENT_MAX = 50_000


def _stale(bot_id: int, records: tuple[EntityRecord, ...]) -> list[EntityRecord]:
    now = time.monotonic()
    out = []
    for record in {(r.peer_type, r.peer_id): r for r in records}.values():
        seen = _recent.get((bot_id, record.peer_type, record.peer_id))
        if seen is None or seen[0] != record or now - seen[1] > ENTITY_FRESH_S:
            out.append(record)
    return out


def _remember_after_commit(session: Session, bot_id: int, records: list[EntityRecord]) -> None:
    """Cache the peers once their rows are committed (a rollback must not be cached)."""

    def remember(_: Session) -> None:
        now = time.monotonic()
        for record in records:
            key = (bot_id, record.peer_type, record.peer_id)
            _recent[key] = (record, now)
            _recent.move_to_end(key)
        while len(_recent) > _RECENT_MAX:
            _recent.popitem(last=False)

    event.listen(session, "after_commit", remember, once=True)


def upsert_entities(session: Session, bot_id: int, records: tuple[EntityRecord, ...]) -> None:
    """Entity store + tg_users from the peers an update brought (hashes are per account)."""
    stale = _stale(bot_id, records)
    if not stale:
        return
    _remember_after_commit(session, bot_id, stale)
    records = tuple(stale)
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
class Step:
    """What one pass over a chat did: ``ok``, ``dead`` (handler failed, dead-lettered),
    ``wait`` (predecessor not recorded yet), ``empty`` (nothing to do) or ``busy``
    (another worker holds the chat); ``more`` when further messages are waiting."""

    outcome: str
    more: bool = False


@dataclass
class DrainResult:
    processed: int = 0
    dead: int = 0
    waiting: bool = False  # a message waits for its predecessor
    busy: bool = False  # another worker is draining this chat

    def add(self, step: Step) -> None:
        if step.outcome == "ok":
            self.processed += 1
        elif step.outcome == "dead":
            self.dead += 1
        elif step.outcome == "wait":
            self.waiting = True
        elif step.outcome == "busy":
            self.busy = True


#: How long a worker waits for a chat another worker is handling before giving up.
CHAT_LOCK_WAIT_MS = 2000
#: Waiting to dead-letter a failed message: long, the failure must be recorded.
LONG_WAIT_MS = 30_000
LOCK_NOT_AVAILABLE = "55P03"


class ChatBusy(Exception):
    """Another worker held the chat for longer than CHAT_LOCK_WAIT_MS."""


@contextmanager
def chat_scope(
    settings: Settings,
    bot_id: int,
    chat_id: int,
    *,
    correlation_id: str | None = None,
    wait_ms: int = CHAT_LOCK_WAIT_MS,
) -> Iterator[Session]:
    """A transaction for ``bot_id`` holding the chat's advisory lock, taken in the same
    round trip as the RLS context and the transaction's first statement, waiting at
    most ``wait_ms``.

    Raises ChatBusy when the lock is not had in time. The lock_timeout set here stays
    for the rest of the transaction: no handler waits long on a row either.
    """
    try:
        with session_scope(
            settings,
            bot_id=bot_id,
            correlation_id=correlation_id,
            advisory_lock=chat_lock_key(bot_id, chat_id),
            lock_timeout_ms=wait_ms,
            lazy_context=True,
        ) as session:
            yield session
    except OperationalError as exc:
        if getattr(exc.orig, "pgcode", None) == LOCK_NOT_AVAILABLE and context_sent_with(exc):
            raise ChatBusy(f"chat {chat_id} of bot {bot_id} is busy") from None
        raise


def record_and_handle(
    settings: Settings, envelope: Envelope, handler: Handler, correlation_id: str | None = None
) -> tuple[bool, Step]:
    """Record an update and handle its chat's first waiting message, in one transaction.

    Returns (fresh, step); the step is ``busy`` when another worker kept the chat, and
    ``dead`` when a handler failed (then rolled back, recorded again, dead-lettered).
    """
    bot_id, chat_id = envelope.bot_id, envelope.chat_id
    scope = partial(session_scope, settings, bot_id=bot_id, correlation_id=correlation_id)
    if chat_id is None or not _is_message(envelope):
        with scope() as session:
            return record_update(session, envelope), Step("empty")
    try:
        with chat_scope(settings, bot_id, chat_id, correlation_id=correlation_id) as session:
            upsert_entities(session, bot_id, envelope.entities)
            rows = execute(session, _RECORD_AND_NEXT, *_message_params(envelope))
            fresh = bool(rows[0].fresh)
            return fresh, _handle_first(session, bot_id, chat_id, handler, rows, envelope)
    except ChatBusy:
        with scope() as session:
            return record_update(session, envelope), Step("busy")
    except HandlerFailed as failure:
        with chat_scope(
            settings, bot_id, chat_id, correlation_id=correlation_id, wait_ms=LONG_WAIT_MS
        ) as session:
            fresh = record_update(session, envelope)
            mark_dead(session, bot_id, failure)
        return fresh, Step("dead", more=True)


def drain_chat(
    settings: Settings,
    bot_id: int,
    chat_id: int,
    handler: Handler,
    *,
    correlation_id: str | None = None,
    first: Step | None = None,
    limit: int = 1000,
) -> DrainResult:
    """Run ``handler`` on the chat's unprocessed inbound messages, in order, once each.

    One transaction per message. ``first`` is a step already taken by the caller (in
    the transaction that recorded the update): draining continues only if it said more.
    """
    result = DrainResult()
    step = first or Step("ok", more=True)
    if first is not None:
        result.add(first)
    while step.more and result.processed + result.dead < limit:
        try:
            with chat_scope(settings, bot_id, chat_id, correlation_id=correlation_id) as s:
                step = process_next(s, bot_id, chat_id, handler)
        except ChatBusy:
            step = Step("busy")
        except HandlerFailed as failure:
            with chat_scope(
                settings, bot_id, chat_id, correlation_id=correlation_id, wait_ms=LONG_WAIT_MS
            ) as s:
                mark_dead(s, bot_id, failure)
            step = Step("dead", more=True)
        result.add(step)
    return result


class HandlerFailed(Exception):
    """A handler raised: the transaction is rolled back and the message dead-lettered."""

    def __init__(self, chat_id: int, tg_message_id: int, error: BaseException) -> None:
        super().__init__(f"handler error: {error!r:.300}")
        self.chat_id = chat_id
        self.tg_message_id = tg_message_id
        self.reason = f"handler error: {error!r:.300}"
        self.traceback = traceback.format_exc(limit=8)[-4000:]


def process_next(session: Session, bot_id: int, chat_id: int, handler: Handler) -> Step:
    """With the chat lock held: handle the chat's first unprocessed inbound message.

    A handler exception raises HandlerFailed (the caller rolls back and calls
    ``mark_dead``); database errors propagate for the task to retry.
    """
    rows = execute(session, _NEXT, bot_id, chat_id)
    return _handle_first(session, bot_id, chat_id, handler, rows)


def _handle_first(
    session: Session,
    bot_id: int,
    chat_id: int,
    handler: Handler,
    rows: Sequence[Any],
    envelope: Envelope | None = None,
) -> Step:
    """Handle the first of ``rows`` (the chat's first two waiting messages, in the shape
    of _NEXT) and mark it processed together with the handler's effects."""
    if not rows or rows[0].id is None:
        return Step("empty")
    row, more = rows[0], len(rows) > 1
    last = row.last_processed_message_id
    if (
        row.prev is not None
        and (last is None or row.prev > last)
        and row.created_at > datetime.now(UTC) - timedelta(seconds=CHAIN_STALL_S)
    ):
        return Step("wait")
    if not row.has_conversation:
        execute(session, _NEW_CONVERSATION, bot_id, chat_id)
    tg_message_id = int(row.tg_message_id or 0)
    try:
        effects = handler(session, _inbound(bot_id, chat_id, row, envelope))
        session.flush()
    except DBAPIError:
        raise  # transient database trouble: the task retries
    except Exception as exc:  # a handler bug must not block the chat
        log.exception("handler failed on message %s of chat %s", row.tg_message_id, chat_id)
        raise HandlerFailed(chat_id, tg_message_id, exc) from exc
    mark = (_MARK_PROCESSED, (bot_id, chat_id, row.id, row.created_at, tg_message_id))
    if effects is None:
        execute_batch(session, [mark])
    else:
        effects.written(session, execute_batch(session, effects.calls([mark])))
    return Step("ok", more)


def mark_dead(session: Session, bot_id: int, failure: HandlerFailed) -> None:
    """With the chat lock held: dead-letter the failed message and mark it processed."""
    row = session.execute(
        text(
            "SELECT id, created_at, text FROM messages WHERE bot_id = :bot AND chat_id = :chat "
            "AND tg_message_id = :msg AND direction = 'in' AND processed_at IS NULL LIMIT 1"
        ),
        {"bot": bot_id, "chat": failure.chat_id, "msg": failure.tg_message_id},
    ).first()
    if row is None:
        return
    session.add(
        DeadUpdate(
            bot_id=bot_id,
            dedupe_key=f"h:{failure.chat_id}:{failure.tg_message_id}",
            reason=failure.reason,
            payload={
                "chat_id": failure.chat_id,
                "tg_message_id": failure.tg_message_id,
                "text": (row.text or "")[:1000],
                "traceback": failure.traceback,
            },
        )
    )
    session.flush()
    execute_batch(
        session,
        [
            (_NEW_CONVERSATION, (bot_id, failure.chat_id)),
            (
                _MARK_PROCESSED,
                (bot_id, failure.chat_id, row.id, row.created_at, failure.tg_message_id),
            ),
        ],
    )


def is_processed(session: Session, bot_id: int, chat_id: int, tg_message_id: int) -> bool:
    """True when no inbound row of that message is still waiting for its handlers."""
    waiting = session.execute(
        select(Message.id)
        .where(
            Message.bot_id == bot_id,
            Message.chat_id == chat_id,
            Message.tg_message_id == tg_message_id,
            Message.direction == MessageDirection.IN,
            Message.processed_at.is_(None),
        )
        .limit(1)
    ).first()
    return waiting is None


def _inbound(
    bot_id: int, chat_id: int, row: Any, envelope: Envelope | None = None
) -> InboundMessage:
    message: types.Message | None = None
    if (
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
        kind=str(row.kind or KIND_MESSAGE),
    )
