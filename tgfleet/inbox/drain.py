"""Running the bots' handlers on a chat's inbound messages: in order, once each.

``drain_chat`` runs the bot's handler on the chat's unprocessed inbound messages in
message-id order, one transaction per message under a per-chat advisory lock, marking
each processed together with its effects. Any number of workers, retries and crashes
give each message's handlers exactly one effect.

Order across workers: each envelope names the previous inbound message the listener
published for that chat (``prev``). A message whose predecessor has not been recorded
yet waits (the worker that records the predecessor drains both), unless it has waited
longer than ``CHAIN_STALL_S`` (the predecessor was dead-lettered, or lost), then it runs
anyway, and a ``chain_gap`` dead letter, written with its effects, names the message it
ran without: never silently.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session
from telethon.tl import types

from tgfleet.db import Message, MessageDirection, session_scope
from tgfleet.db.entities import upsert_entities
from tgfleet.db.prepared import execute, execute_batch
from tgfleet.db.session import context_sent_with
from tgfleet.inbox.failures import (
    HANDLER_RETRY_LIMIT,
    ChainGap,
    HandlerFailed,
    HandlerRaised,
    HandlerRetry,
    mark_dead,
    mark_retry,
    record_gap,
    retry_of,
)
from tgfleet.inbox.record import (
    CHAIN_STALL_S,
    MARK_PROCESSED,
    NEW_CONVERSATION,
    NEXT_WAITING,
    RECORD_AND_NEXT,
    Handler,
    apply_bot_stopped,
    inbound_from_row,
    is_message,
    message_params,
    record_update,
)
from tgfleet.platform.envelope import Envelope, classify
from tgfleet.platform.errors import RetryLater
from tgfleet.platform.settings import Settings

log = logging.getLogger(__name__)


def chat_lock_key(bot_id: int, chat_id: int) -> int:
    """A signed 64-bit advisory-lock key for one chat of one bot."""
    digest = hashlib.blake2b(f"{bot_id}:{chat_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass
class Step:
    """What one pass over a chat did: ``ok``, ``dead`` (handler failed, dead-lettered),
    ``wait`` (predecessor not recorded yet), ``retry`` (a handler asked to be run again
    in ``countdown`` s: the chat waits for it), ``empty`` (nothing to do) or ``busy``
    (another worker holds the chat); ``more`` when further messages are waiting."""

    outcome: str
    more: bool = False
    countdown: float = 0.0


@dataclass
class DrainResult:
    processed: int = 0
    dead: int = 0
    waiting: bool = False  # a message waits for its predecessor
    busy: bool = False  # another worker is draining this chat
    #: A handler asked to run again (RetryLater): the chat waits this long for it.
    retry_in: float | None = None

    def add(self, step: Step) -> None:
        if step.outcome == "retry":
            self.retry_in = step.countdown
        elif step.outcome == "ok":
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
    if chat_id is None or not is_message(envelope):
        with scope() as session:
            return record_update(session, envelope), Step("empty")
    try:
        with chat_scope(settings, bot_id, chat_id, correlation_id=correlation_id) as session:
            upsert_entities(session, bot_id, envelope.entities)
            rows = execute(session, RECORD_AND_NEXT, *message_params(envelope))
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
    except HandlerRetry as retry:
        with chat_scope(
            settings, bot_id, chat_id, correlation_id=correlation_id, wait_ms=LONG_WAIT_MS
        ) as session:
            fresh = record_update(session, envelope)
            mark_retry(session, bot_id, retry)
        return fresh, Step("retry", countdown=retry.countdown)


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
        except HandlerRetry as retry:
            with chat_scope(
                settings, bot_id, chat_id, correlation_id=correlation_id, wait_ms=LONG_WAIT_MS
            ) as s:
                mark_retry(s, bot_id, retry)
            step = Step("retry", countdown=retry.countdown)
        result.add(step)
    return result


def process_next(session: Session, bot_id: int, chat_id: int, handler: Handler) -> Step:
    """With the chat lock held: handle the chat's first unprocessed inbound message.

    A handler exception raises HandlerFailed (the caller rolls back and calls
    ``mark_dead``); database errors propagate for the task to retry.
    """
    rows = execute(session, NEXT_WAITING, bot_id, chat_id)
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
    of NEXT_WAITING) and mark it processed together with the handler's effects."""
    if not rows or rows[0].id is None:
        return Step("empty")
    row, more = rows[0], len(rows) > 1
    last = row.last_processed_message_id
    gap = None
    if row.prev is not None and (last is None or row.prev > last):
        gap = ChainGap(chat_id, int(row.tg_message_id or 0), row.prev, last)
    if gap and row.created_at > datetime.now(UTC) - timedelta(seconds=CHAIN_STALL_S):
        return Step("wait")
    retried = retry_of(row)
    if retried is not None and retried[0] > time.time():  # the chat waits for it
        return Step("retry", countdown=retried[0] - time.time())
    if not row.has_conversation:
        execute(session, NEW_CONVERSATION, bot_id, chat_id)
    tg_message_id = int(row.tg_message_id or 0)
    inbound = inbound_from_row(bot_id, chat_id, row, envelope)
    key = None if inbound.update is None else classify(inbound.update)[1]
    if isinstance(inbound.update, types.UpdateBotStopped):
        apply_bot_stopped(session, bot_id, inbound.update)
    try:
        effects = handler(session, inbound)
        session.flush()
    except DBAPIError:
        raise  # transient database trouble: the task retries
    except Exception as exc:  # a handler bug must not block the chat
        raised = exc if isinstance(exc, HandlerRaised) else HandlerRaised(exc)
        error = raised.error
        if isinstance(error, DBAPIError):
            raise error from None
        if isinstance(error, RetryLater):
            attempts = (retried[1] if retried else 0) + 1
            limit = raised.retry_limit or HANDLER_RETRY_LIMIT
            if attempts <= limit:
                log.info("handler of chat %s asked to retry in %.1fs", chat_id, error.countdown)
                raise HandlerRetry(chat_id, tg_message_id, key, error, attempts) from None
            reason = f"handler asked to retry {attempts} times, gave up: {error.reason}"[:500]
            raise HandlerFailed(
                chat_id, tg_message_id, error, key, raised.on_dead, reason, gap
            ) from None
        log.error(
            "handler failed on %s %s of chat %s",
            row.kind,
            row.tg_message_id,
            chat_id,
            exc_info=error,
        )
        raise HandlerFailed(chat_id, tg_message_id, error, key, raised.on_dead, gap=gap) from error
    if gap:
        record_gap(session, bot_id, gap)
    mark = (MARK_PROCESSED, (bot_id, chat_id, row.id, row.created_at, tg_message_id))
    if effects is None:
        execute_batch(session, [mark])
    else:
        effects.written(session, execute_batch(session, effects.calls([mark])))
    return Step("ok", more)


def is_key_processed(session: Session, bot_id: int, chat_id: int, key: str) -> bool:
    """True when the chat update (a press, a block, a participant update) with dedupe key
    ``key`` was handled."""
    waiting = session.execute(
        text(
            "SELECT 1 FROM messages WHERE bot_id = :bot AND chat_id = :chat "
            "AND direction = 'in' AND processed_at IS NULL AND payload ->> 'key' = :key LIMIT 1"
        ),
        {"bot": bot_id, "chat": chat_id, "key": key},
    ).first()
    return waiting is None


def is_processed(session: Session, bot_id: int, chat_id: int, tg_message_id: int) -> bool:
    """True when no inbound row of that message is still waiting for its handlers (rows
    of presses, blocks and participant updates, which carry the id of the message they
    follow and a key of their own, are not that message)."""
    waiting = session.execute(
        select(Message.id)
        .where(
            Message.bot_id == bot_id,
            Message.chat_id == chat_id,
            Message.tg_message_id == tg_message_id,
            Message.direction == MessageDirection.IN,
            Message.processed_at.is_(None),
            Message.payload["key"].astext.is_(None),
        )
        .limit(1)
    ).first()
    return waiting is None
