"""What an update worker does with one envelope: decode, record, drain the chat.

``handle_envelope`` is the whole of the ``tgfleet.updates.handle`` task, as a plain
function: it returns a typed :class:`HandleResult`, dead-letters bad input with its
reason (the worker carries on), and raises ``RetryLater`` when the envelope has to wait
(its chat busy in another worker, its predecessor not recorded yet, the database
unreachable). ``handle_envelopes`` does the same for a listener's batch, handing back
the envelopes that have to wait instead of failing the rest.

The inbox runs handlers but does not know about bots' apps: the caller passes
``handlers``, which gives the handler of a bot id (``tgfleet.bots.runtime``), or None
for a bot that is not in the fleet.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError

from tgfleet.db import session_scope
from tgfleet.db.entities import upsert_entities
from tgfleet.inbox.deadletter import dead_letter
from tgfleet.inbox.drain import drain_chat, is_key_processed, is_processed, record_and_handle
from tgfleet.inbox.record import CHAIN_STALL_S, Handler
from tgfleet.platform.envelope import Envelope, EnvelopeError, decode, entity_from_json
from tgfleet.platform.errors import AppUnavailable, RetryLater, backoff
from tgfleet.platform.metrics import metrics
from tgfleet.platform.settings import Settings
from tgfleet.platform.tracing import span

log = logging.getLogger(__name__)

#: When another worker holds the chat, look again after this long.
BUSY_RETRY_S = 1.0
#: Longest database backoff an updates task asks for.
DB_BACKOFF_CAP_S = 10.0

#: bot id -> the handler of its app, or None when the bot is not in the fleet.
HandlerLookup = Callable[[int], Handler | None]


class Outcome(enum.Enum):
    """What became of one envelope."""

    PROCESSED = "processed"  # recorded; its chat drained (``processed``/``dead`` say how)
    RECORDED = "recorded"  # recorded; nothing to handle (not a chat message)
    DUPLICATE = "duplicate"  # seen before: nothing changed
    DEAD = "dead"  # bad input: dead-lettered with its reason


@dataclass(frozen=True)
class HandleResult:
    outcome: Outcome
    #: Messages of the chat whose handlers ran (this one and any it unblocked) and
    #: those whose handler raised (dead-lettered).
    processed: int = 0
    dead: int = 0

    def __str__(self) -> str:
        if self.outcome is Outcome.PROCESSED:
            return f"processed={self.processed} dead={self.dead}"
        return self.outcome.value


@dataclass
class BatchResult:
    """A batch's results, and the envelopes that have to wait (with their countdowns)."""

    processed: int = 0
    dead: int = 0
    recorded: int = 0
    duplicate: int = 0
    deferred: list[tuple[Any, float]] = field(default_factory=list)

    def add(self, result: HandleResult) -> None:
        if result.outcome is Outcome.DEAD:
            self.dead += 1
        elif result.outcome is Outcome.RECORDED:
            self.recorded += 1
        elif result.outcome is Outcome.DUPLICATE:
            self.duplicate += 1
        self.processed += result.processed
        self.dead += result.dead

    def __str__(self) -> str:
        counts = {
            "dead": self.dead,
            "deferred": len(self.deferred),
            "duplicate": self.duplicate,
            "processed": self.processed,
            "recorded": self.recorded,
        }
        return " ".join(f"{name}={count}" for name, count in counts.items() if count)


def handle_envelope(
    settings: Settings,
    envelope: Any,
    handlers: HandlerLookup,
    task_id: str | None = None,
    attempt: int = 0,
) -> HandleResult:
    """Record one envelope and run its chat's handlers; raises RetryLater to wait.

    The update is recorded and, when the chat is free, its first waiting message handled
    in one transaction; the rest of the chat's backlog is drained after. It returns only
    once its own message has been handled (here, or by the worker holding the chat), so
    nothing depends on timing.
    """
    try:
        decoded = decode(envelope)
    except EnvelopeError as exc:
        dead_letter(settings, envelope, exc.reason, task_id, kind="bad_envelope")
        return HandleResult(Outcome.DEAD)
    bot = str(decoded.bot_id)
    attributes = {"tgfleet.bot": decoded.bot_id, "tgfleet.kind": decoded.kind}
    try:
        with span("tgfleet.handle", "consumer", decoded.trace_parent, attributes):
            result = _handle_decoded(settings, envelope, decoded, handlers, task_id, attempt)
    except RetryLater:
        metrics().updates_handled.labels(bot, "retry").inc()
        raise
    metrics().updates_handled.labels(bot, result.outcome.value).inc()
    if result.dead:
        metrics().handler_errors.labels(bot).inc(result.dead)
    if result.outcome is Outcome.PROCESSED and decoded.date:
        metrics().update_latency.labels(bot).observe(max(0.0, time.time() - decoded.date))
    return result


def _handle_decoded(
    settings: Settings,
    envelope: Any,
    decoded: Envelope,
    handlers: HandlerLookup,
    task_id: str | None,
    attempt: int,
) -> HandleResult:
    bot_id, chat_id = decoded.bot_id, decoded.chat_id
    try:
        handler = handlers(bot_id)
        if handler is None:
            raise EnvelopeError(f"bot {bot_id} is not in this fleet")
        fresh, first = record_and_handle(settings, decoded, handler, task_id)
        if chat_id is None:
            return HandleResult(Outcome.RECORDED if fresh else Outcome.DUPLICATE)
        result = drain_chat(settings, bot_id, chat_id, handler, correlation_id=task_id, first=first)
        if result.busy:
            with session_scope(settings, bot_id=bot_id, correlation_id=task_id) as session:
                if decoded.msg_id is not None:
                    done = is_processed(session, bot_id, chat_id, decoded.msg_id)
                else:  # a press, a block, a participant update: no message id
                    done = is_key_processed(session, bot_id, chat_id, decoded.key)
            if not done:  # the worker holding the chat may have looked before we committed
                raise RetryLater("chat busy in another worker", BUSY_RETRY_S)
    except EnvelopeError as exc:
        dead_letter(settings, envelope, exc.reason, task_id, kind="bad_envelope")
        return HandleResult(Outcome.DEAD)
    except AppUnavailable as exc:  # the bot's app is gone: keep its updates, say why
        dead_letter(settings, envelope, str(exc), task_id, kind="app_unavailable")
        return HandleResult(Outcome.DEAD)
    except IntegrityError as exc:
        reason = f"rejected by the database: {exc.orig!r:.200}"
        dead_letter(settings, envelope, reason, task_id, kind="database_rejected")
        return HandleResult(Outcome.DEAD)
    except DBAPIError as exc:  # connection trouble, deadlocks, restarts: try again
        delay = backoff(attempt, base=0.5, cap=DB_BACKOFF_CAP_S)
        raise RetryLater(f"database error: {exc.orig!r:.120}", delay) from None
    if result.retry_in is not None:
        # A handler asked to run again later (RetryLater): the chat waits for it.
        raise RetryLater("a handler of this chat asked to retry later", max(0.2, result.retry_in))
    if result.waiting:
        # A predecessor is still in flight; drain again once it had time to land.
        raise RetryLater("waiting for an earlier message of this chat", CHAIN_STALL_S + 1)
    return HandleResult(Outcome.PROCESSED, result.processed, result.dead)


def handle_envelopes(
    settings: Settings,
    envelopes: Any,
    handlers: HandlerLookup,
    task_id: str | None = None,
) -> BatchResult:
    """Several envelopes a listener published together, handled in their order.

    Each goes through ``handle_envelope``. One that has to wait is returned in
    ``deferred`` with the countdown it asked for, and the rest carry on.
    """
    batch = BatchResult()
    if not isinstance(envelopes, list) or not envelopes:
        dead_letter(
            settings, envelopes, "a batch must be a non-empty list", task_id, kind="bad_envelope"
        )
        batch.dead += 1
        return batch
    for envelope in envelopes:
        try:
            batch.add(handle_envelope(settings, envelope, handlers, task_id))
        except RetryLater as exc:
            batch.deferred.append((envelope, exc.countdown))
    return batch


def record_entities(
    settings: Settings, bot_id: int, entities: Iterable[Any], task_id: str | None = None
) -> int:
    """Upsert peers a listener resolved (admin chats at start) into the entity store.

    Bad records are dead-lettered; database errors propagate (the task retries).
    """
    items = list(entities)
    try:
        records = tuple(entity_from_json(item) for item in items)
    except EnvelopeError as exc:
        dead_letter(
            settings, {"bot": bot_id, "ents": items}, exc.reason, task_id, kind="bad_entities"
        )
        return 0
    with session_scope(settings, bot_id=bot_id, correlation_id=task_id) as session:
        upsert_entities(session, bot_id, records)
    return len(records)
