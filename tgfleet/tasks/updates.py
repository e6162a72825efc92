"""Queue ``updates``: every incoming Telegram update, recorded and handled in order, once.

The task is a thin adapter over ``tgfleet.inbox.drain``: decode the envelope
(bad input is dead-lettered with its reason and the worker carries on), record it,
then drain the chat through the bot's app.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

import redis
from celery import shared_task
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError

from tgfleet.bots.runtime import bot_view, handler_for
from tgfleet.db import Bot, DeadUpdate, session_scope
from tgfleet.inbox.drain import (
    CHAIN_STALL_S,
    drain_chat,
    is_processed,
    record_and_handle,
    upsert_entities,
)
from tgfleet.listeners.publisher import BATCH_TASK_NAME, TASK_NAME, UPDATES_QUEUE
from tgfleet.platform import taskmsg
from tgfleet.platform.celery_app import TgfleetTask
from tgfleet.platform.envelope import EnvelopeError, decode, entity_from_json
from tgfleet.platform.errors import RetryLater
from tgfleet.platform.taskmsg import TaskCall

log = logging.getLogger(__name__)

#: Envelopes that name no known bot cannot go to dead_updates (a tenant table): they
#: land in this Redis list with their reason.
ORPHAN_DEAD_LETTERS = "tgfleet:dead-updates:orphans"
#: Longest countdown an updates task schedules (redelivery of stuck messages waits longer).
UPDATES_MAX_COUNTDOWN_S = 60.0
#: When another worker holds the chat, look again after this long.
BUSY_RETRY_S = 1.0


@shared_task(
    name=TASK_NAME,
    bind=True,
    max_retries=None,
    backoff_cap_s=UPDATES_MAX_COUNTDOWN_S,
)
def handle(self: TgfleetTask, envelope: Any) -> str:
    """Record one update envelope and run its chat's handlers.

    The update is recorded and, when the chat is free, its first waiting message handled
    in one transaction; the rest of the chat's backlog is drained after. A task ends
    only once its own message has been handled (by it, or by the worker holding the
    chat), so nothing depends on timing.
    """
    return handle_envelope(self, envelope)


@shared_task(
    name=BATCH_TASK_NAME,
    bind=True,
    max_retries=None,
    backoff_cap_s=UPDATES_MAX_COUNTDOWN_S,
)
def handle_batch(self: TgfleetTask, envelopes: Any) -> str:
    """Several envelopes a listener published together, handled in their order.

    Each goes through exactly what ``handle`` does. One that has to wait (its chat busy
    in another worker, its predecessor not recorded yet, database trouble) is sent on as
    its own ``handle`` task with the countdown it asked for, and the rest carry on.
    """
    if not isinstance(envelopes, list) or not envelopes:
        dead_letter(
            self.app.settings, envelopes, "a batch must be a non-empty list", self.request.id
        )
        return "dead"
    outcomes: Counter[str] = Counter()
    later: list[TaskCall] = []
    for envelope in envelopes:
        try:
            for part in handle_envelope(self, envelope).split():  # "processed=1 dead=0"
                name, _, count = part.partition("=")
                outcomes[name] += int(count) if count else 1
        except RetryLater as exc:
            countdown = min(exc.countdown, UPDATES_MAX_COUNTDOWN_S)
            later.append(TaskCall(TASK_NAME, UPDATES_QUEUE, args=[envelope], countdown=countdown))
            outcomes["deferred"] += 1
    if later:
        try:
            taskmsg.publish(self.app, later)
        except redis.RedisError as exc:  # all of it again later; done ones are deduplicated
            raise RetryLater(f"could not defer {len(later)} updates: {exc}", 1.0) from None
    return " ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))


def handle_envelope(task: TgfleetTask, envelope: Any) -> str:
    """``handle``'s work for one envelope; raises RetryLater when it has to wait."""
    settings = task.app.settings
    task_id = task.request.id
    try:
        decoded = decode(envelope)
    except EnvelopeError as exc:
        dead_letter(settings, envelope, exc.reason, task_id)
        return "dead"
    bot_id, chat_id = decoded.bot_id, decoded.chat_id
    try:
        bot = bot_view(settings, bot_id)
        if bot is None:
            raise EnvelopeError(f"bot {bot_id} is not in this fleet")
        handler = handler_for(bot)
        fresh, first = record_and_handle(settings, decoded, handler, task_id)
        if chat_id is None:
            return "recorded" if fresh else "duplicate"
        result = drain_chat(settings, bot_id, chat_id, handler, correlation_id=task_id, first=first)
        if result.busy and decoded.msg_id is not None:
            with session_scope(settings, bot_id=bot_id, correlation_id=task_id) as session:
                done = is_processed(session, bot_id, chat_id, decoded.msg_id)
            if not done:  # the worker holding the chat may have looked before we committed
                raise RetryLater("chat busy in another worker", BUSY_RETRY_S)
    except EnvelopeError as exc:
        dead_letter(settings, envelope, exc.reason, task_id)
        return "dead"
    except IntegrityError as exc:
        dead_letter(settings, envelope, f"rejected by the database: {exc.orig!r:.200}", task_id)
        return "dead"
    except DBAPIError as exc:  # connection trouble, deadlocks, restarts: try again
        raise RetryLater(f"database error: {exc.orig!r:.120}", task.backoff(base=0.5)) from None
    if result.waiting:
        # A predecessor is still in flight; drain again once it had time to land.
        raise RetryLater("waiting for an earlier message of this chat", CHAIN_STALL_S + 1)
    return f"processed={result.processed} dead={result.dead}"


def dead_letter(settings: Any, envelope: Any, reason: str, task_id: str | None) -> None:
    """Keep a bad envelope with its reason: in dead_updates, or Redis if it names no bot."""
    log.warning("dead-lettering update: %s", reason)
    payload = envelope if isinstance(envelope, dict) else {"raw": repr(envelope)[:10_000]}
    bot_id = payload.get("bot") if isinstance(payload, dict) else None
    if isinstance(bot_id, int) and not isinstance(bot_id, bool):
        try:
            with session_scope(settings, bot_id=bot_id, correlation_id=task_id) as session:
                if session.execute(select(Bot.id).where(Bot.id == bot_id)).first() is not None:
                    key = payload.get("key")
                    session.add(
                        DeadUpdate(
                            bot_id=bot_id,
                            dedupe_key=key if isinstance(key, str) else None,
                            reason=reason,
                            payload=payload,
                        )
                    )
                    return
        except DBAPIError:
            log.exception("could not store the dead letter in PostgreSQL; keeping it in Redis")
    client = redis.Redis.from_url(settings.redis_url)
    try:
        client.lpush(
            ORPHAN_DEAD_LETTERS,
            json.dumps({"reason": reason, "task_id": task_id, "envelope": payload}, default=str),
        )
        client.ltrim(ORPHAN_DEAD_LETTERS, 0, 99_999)
    finally:
        client.close()


@shared_task(name="tgfleet.updates.record_entities", bind=True, max_retries=10)
def record_entities(self: TgfleetTask, bot_id: int, entities: list[Any]) -> int:
    """Upsert peers a listener resolved (admin chats at start) into the entity store."""
    try:
        records = tuple(entity_from_json(item) for item in entities)
    except EnvelopeError as exc:
        dead_letter(
            self.app.settings, {"bot": bot_id, "ents": entities}, exc.reason, self.request.id
        )
        return 0
    try:
        with session_scope(self.app.settings, bot_id=bot_id, correlation_id=self.request.id) as s:
            upsert_entities(s, bot_id, records)
    except DBAPIError as exc:
        raise RetryLater(f"database error: {exc.orig!r:.120}", self.backoff(base=0.5)) from None
    return len(records)
