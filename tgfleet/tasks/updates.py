"""Queue ``updates``: every incoming Telegram update, recorded and handled in order, once.

Thin adapters over ``tgfleet.inbox.handle``: the envelope is handled there (bad input
is dead-lettered with its reason and the worker carries on); here a wait becomes a
Celery retry, and a batch's waiting envelopes become tasks of their own.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import redis
from celery import shared_task
from sqlalchemy.exc import DBAPIError

from tgfleet.bots.runtime import handler_of_bot
from tgfleet.inbox.handle import handle_envelope, handle_envelopes, record_entities
from tgfleet.platform import taskmsg
from tgfleet.platform.celery_app import TgfleetTask
from tgfleet.platform.errors import RetryLater
from tgfleet.platform.names import (
    HANDLE_UPDATE,
    HANDLE_UPDATE_BATCH,
    RECORD_ENTITIES,
    UPDATES_QUEUE,
)
from tgfleet.platform.taskmsg import TaskCall

#: Longest countdown an updates task schedules (redelivery of stuck messages waits longer).
UPDATES_MAX_COUNTDOWN_S = 60.0


@shared_task(name=HANDLE_UPDATE, bind=True, max_retries=None, backoff_cap_s=UPDATES_MAX_COUNTDOWN_S)
def handle(self: TgfleetTask, envelope: Any) -> str:
    """Record one update envelope and run its chat's handlers (``handle_envelope``)."""
    settings = self.app.settings
    handlers = partial(handler_of_bot, settings)
    return str(handle_envelope(settings, envelope, handlers, self.request.id, self.request.retries))


@shared_task(
    name=HANDLE_UPDATE_BATCH, bind=True, max_retries=None, backoff_cap_s=UPDATES_MAX_COUNTDOWN_S
)
def handle_batch(self: TgfleetTask, envelopes: Any) -> str:
    """Several envelopes a listener published together, handled in their order; one that
    has to wait is sent on as its own ``handle`` task with the countdown it asked for."""
    settings = self.app.settings
    result = handle_envelopes(
        settings, envelopes, partial(handler_of_bot, settings), self.request.id
    )
    if result.deferred:
        later = [
            TaskCall(
                HANDLE_UPDATE,
                UPDATES_QUEUE,
                args=[envelope],
                countdown=min(countdown, UPDATES_MAX_COUNTDOWN_S),
            )
            for envelope, countdown in result.deferred
        ]
        try:
            taskmsg.publish(self.app, later)
        except redis.RedisError as exc:  # all of it again later; done ones are deduplicated
            raise RetryLater(f"could not defer {len(later)} updates: {exc}", 1.0) from None
    return str(result)


@shared_task(name=RECORD_ENTITIES, bind=True, max_retries=10)
def record_entities_task(self: TgfleetTask, bot_id: int, entities: list[Any]) -> int:
    """Upsert peers a listener resolved (admin chats at start) into the entity store."""
    try:
        return record_entities(self.app.settings, bot_id, entities, self.request.id)
    except DBAPIError as exc:
        raise RetryLater(f"database error: {exc.orig!r:.120}", self.backoff(base=0.5)) from None
