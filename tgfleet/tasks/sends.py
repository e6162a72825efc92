"""The ``sends`` queue: ``tgfleet.sends.deliver(outbox_id, bot_id)``.

Run it as ``celery -A tgfleet worker -Q sends -P threads -c 8``: one process hosts one
asyncio loop thread with every bot's Telethon client (``tgfleet.sends.sender``); the
pool's threads run tasks and hand their Telegram calls to that loop.

The task is a thin adapter: the service decides; this maps its outcome to Celery
(``retry`` -> ``self.retry(countdown=...)``, never a sleep). Retries are unlimited at the
Celery level because most are rate-limit waits; failures that count are capped by
``TGFLEET_SEND_MAX_ATTEMPTS`` on the row itself.

Each sender process also sweeps, at most once per ``TGFLEET_SEND_SWEEP_INTERVAL_S``
cluster-wide, for rows overdue by more than ``TGFLEET_SEND_LEASE_S`` plus the queue's current
delay (long waits are written to ``next_attempt_at`` or booked in the pacer): their task was lost
(a worker killed with -9 keeps its unacked messages until Redis' visibility timeout, hours
later) and is enqueued again. A duplicate task is harmless: the claim is atomic.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

from celery import shared_task
from celery.signals import worker_process_shutdown, worker_ready, worker_shutdown

from celeryconfig import MAX_COUNTDOWN_S
from tgfleet.db import session_scope
from tgfleet.platform.celery_app import TgfleetTask
from tgfleet.platform.settings import Settings
from tgfleet.sends import delivery
from tgfleet.sends.outbox import enqueue_deliveries, queue_message
from tgfleet.sends.pacing import Stage
from tgfleet.sends.sender import SEND_METRICS, Sender

__all__ = ["deliver", "get_sender", "queue_message", "sweep_overdue"]

log = logging.getLogger(__name__)

SWEEP_LOCK = "tgfleet:sends:sweep"
#: The broker's list for the ``sends`` queue (kombu's Redis transport, default priority).
SENDS_QUEUE = "sends"
MAX_QUEUE_DELAY_S = 3600.0

_sender: Sender | None = None
_sender_lock = threading.Lock()
_stop_sweeping = threading.Event()


def get_sender(settings: Settings) -> Sender:
    """This process's Sender (made on first use, with its sweep thread)."""
    global _sender
    with _sender_lock:
        if _sender is None:
            _sender = Sender(settings)
            _stop_sweeping.clear()
            threading.Thread(
                target=_sweep_forever, args=(_sender,), name="tgfleet-sends-sweep", daemon=True
            ).start()
        return _sender


def close_sender() -> None:
    global _sender
    with _sender_lock:
        sender, _sender = _sender, None
    _stop_sweeping.set()
    if sender is not None:
        log.info("sender: disconnecting clients")
        sender.close()


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


class QueueDelay:
    """How long a task now waits in the ``sends`` queue: backlog / recent send rate."""

    def __init__(self) -> None:
        self._last: tuple[float, int] | None = None

    def estimate(self, sender: Sender) -> float | None:
        """Seconds (0 for an empty queue); None until a send rate has been observed."""
        backlog = int(sender.redis.llen(SENDS_QUEUE))
        sent = int(sender.redis.hget(SEND_METRICS, "sent") or 0)
        now = time.monotonic()
        last, self._last = self._last, (now, sent)
        if backlog == 0:
            return 0.0
        if last is None or now <= last[0]:
            return None
        rate = max(1.0, (sent - last[1]) / (now - last[0]))
        return min(MAX_QUEUE_DELAY_S, 2 * backlog / rate)


def sweep_overdue(sender: Sender, queue_delay: QueueDelay | None = None) -> int:
    """Re-enqueue rows whose task was lost; at most one sweep per interval cluster-wide.

    A row counts as lost when it is overdue by more than the lease plus twice the time a
    task now spends in the queue, so a busy queue (never empty) is not mistaken for loss.
    """
    delay = (queue_delay or QueueDelay()).estimate(sender)
    if delay is None:
        return 0  # a backlog, and no rate yet to tell late from lost: next time
    interval = sender.settings.send_sweep_interval_s
    if not sender.redis.set(SWEEP_LOCK, "1", nx=True, px=int(interval * 1000)):
        return 0
    grace = sender.settings.send_lease_s + delay
    with session_scope(sender.settings, role="admin") as s:
        candidates = delivery.overdue_bots(s, sender.settings, delay)
        # A bot with slots booked ahead has tasks waiting for them: its rows are late,
        # not lost (bot-slot waits are not written to the rows, to spare the database).
        idle = [b for b in candidates if sender.pacer.booked_ahead(b) < grace]
        rows = delivery.overdue(s, sender.settings, idle, delay) if idle else []
    if rows:
        log.warning("sweep: %d outbox rows had lost their task; enqueued again", len(rows))
        enqueue_deliveries(rows)
    return len(rows)


def _sweep_forever(sender: Sender) -> None:
    interval = sender.settings.send_sweep_interval_s
    queue_delay = QueueDelay()
    while not _stop_sweeping.wait(interval * random.uniform(0.5, 1.0)):
        try:
            sweep_overdue(sender, queue_delay)
        except Exception:
            log.exception("sweep failed; trying again next interval")


@shared_task(name="tgfleet.sends.deliver", bind=True, ignore_result=True, max_retries=None)
def deliver(
    self: TgfleetTask,
    outbox_id: int,
    bot_id: int,
    chat_id: int | None = None,
    stage: int = 0,
    distrust_hash: int | None = None,
) -> str:
    """Deliver one outbox row (see ``tgfleet.sends.sender.Sender.deliver``)."""
    sender = get_sender(self.app.settings)
    outcome = sender.deliver(
        int(outbox_id),
        int(bot_id),
        chat_id=None if chat_id is None else int(chat_id),
        stage=Stage(int(stage)),
        distrust_hash=distrust_hash,
        correlation_id=self.request.id,
    )
    if outcome.status == "retry":
        kwargs: dict[str, Any] = {
            "outbox_id": outbox_id,
            "bot_id": bot_id,
            "chat_id": chat_id,
            "stage": int(outcome.stage),
            **outcome.extra,
        }
        if outcome.detail != "rate limit":
            log.info("outbox %s: retry in %.1fs: %s", outbox_id, outcome.countdown, outcome.detail)
        countdown = min(outcome.countdown, MAX_COUNTDOWN_S)
        raise self.retry(countdown=countdown, kwargs=kwargs)
    if outcome.status in ("failed", "dead"):
        log.warning("outbox %s %s: %s", outbox_id, outcome.status, outcome.detail)
    return outcome.status
