"""When a handler fails: dead letters, and retries a handler asks for.

A handler that raises dead-letters its update (``mark_dead``, in a transaction of its
own once the handler's was rolled back), with the effects its runtime asks for then
(``HandlerRaised.on_dead``: a press's answer, the admins' notice). A handler that raises
``RetryLater`` leaves its update unprocessed with a mark (``mark_retry``); nothing after
it in the chat runs before the mark's time, and after ``HANDLER_RETRY_LIMIT`` attempts it
is dead-lettered too.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session
from telethon.extensions import BinaryReader

from tgfleet.db import DeadUpdate
from tgfleet.db.prepared import Call, execute_batch
from tgfleet.inbox.record import (
    CHAIN_STALL_S,
    MARK_PROCESSED,
    NEW_CONVERSATION,
    HandlerEffects,
    apply_bot_stopped,
)
from tgfleet.platform.envelope import KIND_BOT_STOPPED
from tgfleet.platform.errors import RetryLater
from tgfleet.platform.metrics import metrics

log = logging.getLogger(__name__)

#: How many times a handler may ask to run an update again (RetryLater) before the
#: update is dead-lettered; a bot's ``settings["handler_retry_limit"]`` overrides it.
HANDLER_RETRY_LIMIT = 5


class HandlerRaised(Exception):
    """What a bot runtime raises for its handler's exception ``error``: ``on_dead`` are
    the effects to write if the update is dead-lettered for it (the press's answer, the
    admins' notice), ``retry_limit`` how many RetryLater the bot allows."""

    def __init__(
        self,
        error: BaseException,
        on_dead: HandlerEffects | None = None,
        retry_limit: int | None = None,
    ) -> None:
        super().__init__(f"handler error: {error!r:.300}")
        self.error = error
        self.on_dead = on_dead
        self.retry_limit = retry_limit


@dataclass(frozen=True)
class ChainGap:
    """Message ``message`` of chat ``chat_id`` runs without ``missing``, the message the
    listener published before it (its ``prev``), which was not recorded in time."""

    chat_id: int
    message: int
    missing: int
    last_handled: int | None


class HandlerFailed(Exception):
    """A handler raised: the transaction is rolled back and the message dead-lettered
    (and ``on_dead`` written with the dead letter). ``gap``: the message ran without its
    predecessor, whose dead letter the rollback took with it."""

    def __init__(
        self,
        chat_id: int,
        tg_message_id: int,
        error: BaseException,
        key: str | None = None,
        on_dead: HandlerEffects | None = None,
        reason: str | None = None,
        gap: ChainGap | None = None,
    ) -> None:
        super().__init__(reason or f"handler error: {error!r:.300}")
        self.chat_id = chat_id
        self.tg_message_id = tg_message_id
        #: The update's dedupe key, for chat updates that are not messages (a press).
        self.key = key
        self.reason = reason or f"handler error: {error!r:.300}"
        self.on_dead = on_dead
        self.gap = gap
        lines = traceback.format_exception(type(error), error, error.__traceback__, limit=8)
        self.traceback = "".join(lines)[-4000:]


class HandlerRetry(Exception):
    """A handler raised RetryLater: the transaction is rolled back, the message stays
    unprocessed, and its chat waits ``countdown`` s for it (``attempts`` so far)."""

    def __init__(
        self, chat_id: int, tg_message_id: int, key: str | None, retry: RetryLater, attempts: int
    ) -> None:
        super().__init__(retry.reason)
        self.chat_id = chat_id
        self.tg_message_id = tg_message_id
        self.key = key
        self.reason = retry.reason
        self.countdown = max(0.0, float(retry.countdown))
        self.attempts = attempts


_FAILED_BY_MESSAGE = text(
    "SELECT id, created_at, text, tg_message_id, payload ->> 'kind' AS kind, "
    "payload ->> 'tl' AS tl FROM messages WHERE bot_id = :bot "
    "AND chat_id = :chat AND tg_message_id = :msg AND direction = 'in' "
    "AND processed_at IS NULL AND payload ->> 'key' IS NULL ORDER BY id LIMIT 1"
)
_FAILED_BY_KEY = text(
    "SELECT id, created_at, text, tg_message_id, payload ->> 'kind' AS kind, "
    "payload ->> 'tl' AS tl FROM messages WHERE bot_id = :bot "
    "AND chat_id = :chat AND direction = 'in' AND processed_at IS NULL "
    "AND payload ->> 'key' = :key LIMIT 1"
)


def _waiting_row(
    session: Session, bot_id: int, chat_id: int, tg_message_id: int, key: str | None
) -> Any:
    """The unprocessed inbound row of a message (by id) or another chat update (by key)."""
    return session.execute(
        _FAILED_BY_KEY if key is not None else _FAILED_BY_MESSAGE,
        {"bot": bot_id, "chat": chat_id, "msg": tg_message_id, "key": key},
    ).first()


def retry_of(row: Any) -> tuple[float, int] | None:
    """(when it may run again, attempts so far) of a message a handler asked to retry."""
    retry = getattr(row, "retry", None)
    if isinstance(retry, str):
        retry = json.loads(retry)
    if not isinstance(retry, dict):
        return None
    return float(retry.get("at") or 0), int(retry.get("n") or 0)


_MARK_RETRY = text(
    "UPDATE messages SET payload = payload || jsonb_build_object('retry', "
    "jsonb_build_object('at', CAST(:at AS float8), 'n', CAST(:n AS int), "
    "'reason', CAST(:reason AS text))) WHERE bot_id = :bot AND created_at = :created AND id = :id"
)


def mark_retry(session: Session, bot_id: int, retry: HandlerRetry) -> None:
    """With the chat lock held: the message runs again in ``retry.countdown`` s, not
    before, and nothing after it in its chat does either."""
    row = _waiting_row(session, bot_id, retry.chat_id, retry.tg_message_id, retry.key)
    if row is None:
        return
    session.execute(
        _MARK_RETRY,
        {
            "at": time.time() + retry.countdown,
            "n": retry.attempts,
            "reason": retry.reason[:500],
            "bot": bot_id,
            "created": row.created_at,
            "id": row.id,
        },
    )


def mark_dead(session: Session, bot_id: int, failure: HandlerFailed) -> None:
    """With the chat lock held: dead-letter the failed message and mark it processed,
    writing the failure's ``on_dead`` effects with it (and the dead letter of the chain
    gap it ran after, if it did)."""
    row = _waiting_row(session, bot_id, failure.chat_id, failure.tg_message_id, failure.key)
    if row is None:
        return
    if failure.gap is not None:
        record_gap(session, bot_id, failure.gap)
    metrics().dead_letters.labels("handler_failed").inc()
    which = failure.key or str(failure.tg_message_id)
    if row.kind == KIND_BOT_STOPPED:  # the block stands even if a handler of it failed
        apply_bot_stopped(session, bot_id, BinaryReader(base64.b64decode(row.tl)).tgread_object())
    session.add(
        DeadUpdate(
            bot_id=bot_id,
            dedupe_key=f"h:{failure.chat_id}:{which}",
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
    marks: list[Call] = [
        (NEW_CONVERSATION, (bot_id, failure.chat_id)),
        (MARK_PROCESSED, (bot_id, failure.chat_id, row.id, row.created_at, failure.tg_message_id)),
    ]
    if failure.on_dead is None:
        execute_batch(session, marks)
    else:
        failure.on_dead.written(session, execute_batch(session, failure.on_dead.calls(marks)))


def record_gap(session: Session, bot_id: int, gap: ChainGap) -> None:
    """The dead letter of a chat's chain gap, in ``session``'s transaction."""
    reason = (
        f"message {gap.message} of chat {gap.chat_id} ran without message {gap.missing}, "
        f"which came before it and was not recorded within {CHAIN_STALL_S:.0f}s "
        f"(last handled: {gap.last_handled}): it was dead-lettered, or lost before it "
        "reached the inbox"
    )
    log.error("chain gap: %s", reason)
    metrics().dead_letters.labels("chain_gap").inc()
    session.add(
        DeadUpdate(
            bot_id=bot_id,
            dedupe_key=None,
            reason=reason,
            payload={
                "kind": "chain_gap",
                "chat": gap.chat_id,
                "message": gap.message,
                "missing": gap.missing,
                "last_handled": gap.last_handled,
            },
        )
    )
