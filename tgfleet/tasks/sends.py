"""The ``sends`` queue: ``tgfleet.sends.deliver(outbox_id, bot_id)`` for one row,
``tgfleet.sends.deliver_batch(bot_id, items)`` for many plain sends of one bot, and
``tgfleet.sends.deliver_ready(bot_id)`` for a bot's replies, in rounds.

Run it as ``celery -A tgfleet worker -Q sends -P threads -c 8``: one process hosts one
asyncio loop thread with every bot's Telethon client (``tgfleet.sends.runtime``); the
pool's threads run tasks and hand their Telegram calls to that loop.

The task is a thin adapter: the Sender decides; this maps its outcome to Celery: a
``retry`` sends the task again with a countdown under its own id (``again``), never a
sleep. Retries are unlimited because most are rate-limit waits; failures that count are
capped by ``TGFLEET_SEND_MAX_ATTEMPTS`` on the row itself.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import shared_task
from celery.signals import worker_process_shutdown, worker_ready, worker_shutdown
from sqlalchemy.exc import DBAPIError

from celeryconfig import MAX_COUNTDOWN_S
from tgfleet.platform import taskmsg
from tgfleet.platform.celery_app import TgfleetTask
from tgfleet.platform.errors import RetryLater
from tgfleet.platform.names import DELIVER, DELIVER_BATCH, DELIVER_READY, SENDS_QUEUE
from tgfleet.platform.taskmsg import TaskCall
from tgfleet.sends.batch import deliver_batch as deliver_round
from tgfleet.sends.loop import SenderUnavailable
from tgfleet.sends.pacing import Stage
from tgfleet.sends.ready import deliver_ready as ready_round
from tgfleet.sends.runtime import close_sender, get_sender

log = logging.getLogger(__name__)


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    """A worker consuming ``sends`` starts its Sender (and sweep) at once: after a crash of
    every sender, the lost tasks come back even if no new task ever arrives."""
    queues = getattr(getattr(sender, "task_consumer", None), "queues", None) or []
    if any(getattr(q, "name", None) == SENDS_QUEUE for q in queues):
        get_sender(sender.app.settings)


@worker_process_shutdown.connect
def _on_process_shutdown(**_: Any) -> None:
    close_sender()


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    close_sender()


@shared_task(name=DELIVER, bind=True, ignore_result=True, max_retries=None)
def deliver(
    self: TgfleetTask,
    outbox_id: int,
    bot_id: int,
    chat_id: int | None = None,
    stage: int = 0,
    distrust_hash: int | None = None,
    op: str | None = None,
) -> str:
    """Deliver one outbox row (see ``tgfleet.sends.sender.Sender.deliver``)."""
    outcome = get_sender(self.app.settings).deliver(
        int(outbox_id),
        int(bot_id),
        chat_id=None if chat_id is None else int(chat_id),
        stage=Stage(int(stage)),
        distrust_hash=distrust_hash,
        correlation_id=self.request.id,
        op=op,
    )
    if outcome.status == "retry":
        kwargs: dict[str, Any] = {
            "outbox_id": outbox_id,
            "bot_id": bot_id,
            "chat_id": chat_id,
            "stage": int(outcome.stage),
            "op": op,
            **outcome.extra,
        }
        if outcome.detail != "rate limit":
            log.info("outbox %s: retry in %.1fs: %s", outbox_id, outcome.countdown, outcome.detail)
        return again(self, outcome.countdown, kwargs)
    if outcome.status in ("failed", "dead"):
        log.warning("outbox %s %s: %s", outbox_id, outcome.status, outcome.detail)
    return outcome.status


@shared_task(name=DELIVER_BATCH, bind=True, ignore_result=True, max_retries=None)
def deliver_batch(
    self: TgfleetTask,
    bot_id: int,
    items: list[list[int]],
    reserved: bool = False,
    broadcast_id: int | None = None,
) -> str:
    """Deliver up to ``BATCH_SIZE`` plain sends of one bot, each to its own chat
    (``items``: [outbox_id, chat_id] pairs; see ``tgfleet.sends.batch``); what a round
    could not send yet comes back as this task."""
    pairs = [(int(outbox_id), int(chat_id)) for outbox_id, chat_id in items]
    outcome = deliver_round(
        get_sender(self.app.settings),
        int(bot_id),
        pairs,
        reserved=bool(reserved),
        correlation_id=self.request.id,
        broadcast_id=None if broadcast_id is None else int(broadcast_id),
    )
    if outcome.rest:
        rest = [list(item) for item in outcome.rest]
        kwargs: dict[str, Any] = {"bot_id": bot_id, "items": rest, "reserved": True}
        if outcome.broadcast_id is not None:
            kwargs["broadcast_id"] = outcome.broadcast_id
        return again(self, outcome.countdown, kwargs, f"sent {outcome.sent}, rest")
    return f"sent {outcome.sent}, handed off {outcome.handed_off}"


@shared_task(
    name=DELIVER_READY, bind=True, ignore_result=True, max_retries=None, backoff_cap_s=10.0
)
def deliver_ready(self: TgfleetTask, bot_id: int) -> str:
    """One round of the bot's ready replies (see ``tgfleet.sends.ready``); it comes back
    as this task while replies are left (their tokens, or wakes that came in meanwhile).
    A database or Redis failure retries the round with backoff: the replies are rows."""
    try:
        outcome = ready_round(get_sender(self.app.settings), int(bot_id), self.request.id)
    except (DBAPIError, redis.RedisError, SenderUnavailable) as exc:
        raise RetryLater(f"{type(exc).__name__}: {exc}"[:200], self.backoff(base=0.5)) from None
    done = f"ready {outcome.ready}, sent {outcome.sent}"
    if outcome.again is not None:
        return again(self, outcome.again, {"bot_id": bot_id}, done)
    return done


def again(task: TgfleetTask, countdown: float, kwargs: dict[str, Any], done: str = "") -> str:
    """Send ``task`` again, to run in ``countdown`` seconds with ``kwargs``, under its own
    id (the correlation id of its rows' audit), as ``self.retry`` would, before this run
    is acknowledged. ``self.retry`` raises, and Celery formats the traceback of what it
    raised: with every paced send coming back once, that was a fifth of a sender's CPU.
    One LPUSH on a Redis broker; ``self.retry`` on any other."""
    countdown = min(countdown, MAX_COUNTDOWN_S)
    if not taskmsg.supports(task.app):
        raise task.retry(countdown=countdown, kwargs=kwargs)
    call = TaskCall(
        task.name, SENDS_QUEUE, kwargs=kwargs, countdown=countdown, task_id=task.request.id
    )
    taskmsg.publish(task.app, [call])
    return f"{done}{', ' if done else ''}again in {countdown:.2f}s"
