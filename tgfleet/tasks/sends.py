"""The ``sends`` queue: ``tgfleet.sends.deliver(outbox_id, bot_id)``.

Run it as ``celery -A tgfleet worker -Q sends -P threads -c 8``: one process hosts one
asyncio loop thread with every bot's Telethon client (``tgfleet.platform.sender``); the
pool's threads run tasks and hand their Telegram calls to that loop.

The task is a thin adapter: the service decides; this maps its outcome to Celery
(``retry`` -> ``self.retry(countdown=...)``, never a sleep). Retries are unlimited at the
Celery level because most are rate-limit waits; failures that count are capped by
``TGFLEET_SEND_MAX_ATTEMPTS`` on the row itself.

Each sender process also sweeps, at most once per ``TGFLEET_SEND_SWEEP_INTERVAL_S``
cluster-wide and only when the queue is drained, for rows overdue by more than
``TGFLEET_SEND_LEASE_S`` (every wait is written to ``next_attempt_at``): their task was lost
(a worker killed with -9 keeps its unacked messages until Redis' visibility timeout, hours
later) and is enqueued again. A duplicate task is harmless: the claim is atomic.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

from celery import shared_task
from celery.signals import worker_process_shutdown, worker_shutdown

from celeryconfig import MAX_COUNTDOWN_S
from tgfleet.db import session_scope
from tgfleet.platform import delivery
from tgfleet.platform.celery_app import TgfleetTask
from tgfleet.platform.pacing import Stage
from tgfleet.platform.sender import Sender
from tgfleet.platform.settings import Settings
from tgfleet.tasks.outbox import enqueue_deliveries, queue_message

__all__ = ["deliver", "get_sender", "queue_message", "sweep_overdue"]

log = logging.getLogger(__name__)

SWEEP_LOCK = "tgfleet:sends:sweep"
#: The broker's list for the ``sends`` queue (kombu's Redis transport, default priority).
SENDS_QUEUE = "sends"

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


@worker_process_shutdown.connect
def _on_process_shutdown(**_: Any) -> None:
    close_sender()


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    close_sender()


def sweep_overdue(sender: Sender) -> int:
    """Re-enqueue rows whose task was lost; at most one sweep per interval cluster-wide."""
    interval = sender.settings.send_sweep_interval_s
    if sender.redis.llen(SENDS_QUEUE):
        return 0  # tasks still waiting in the queue: their rows are late, not lost
    if not sender.redis.set(SWEEP_LOCK, "1", nx=True, px=int(interval * 1000)):
        return 0
    grace = sender.settings.send_lease_s
    with session_scope(sender.settings, role="admin") as s:
        candidates = delivery.overdue_bots(s, sender.settings)
        # A bot with slots booked ahead has tasks waiting for them: its rows are late,
        # not lost (bot-slot waits are not written to the rows, to spare the database).
        idle = [b for b in candidates if sender.pacer.booked_ahead(b) < grace]
        rows = delivery.overdue(s, sender.settings, idle) if idle else []
    if rows:
        log.warning("sweep: %d outbox rows had lost their task; enqueued again", len(rows))
        enqueue_deliveries(rows)
    return len(rows)


def _sweep_forever(sender: Sender) -> None:
    interval = sender.settings.send_sweep_interval_s
    while not _stop_sweeping.wait(interval * random.uniform(0.5, 1.0)):
        try:
            sweep_overdue(sender)
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
    """Deliver one outbox row (see ``tgfleet.platform.sender.Sender.deliver``)."""
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
