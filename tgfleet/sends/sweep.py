"""The sweep: outbox rows whose ``deliver`` task was lost are enqueued again (a bot's
overdue replies: its ready-sends task is pushed again, ``tgfleet.sends.ready``).

A worker killed with -9 keeps its unacknowledged messages until Redis' visibility
timeout, hours later. Each sender process therefore sweeps, at most once per
``TGFLEET_SEND_SWEEP_INTERVAL_S`` cluster-wide, for rows overdue by more than
``TGFLEET_SEND_LEASE_S`` plus the queue's current delay (long waits are written to
``next_attempt_at`` or booked in the pacer) and enqueues them again. A duplicate task
is harmless: the claim is atomic.
"""

from __future__ import annotations

import logging
import time

from tgfleet.db import session_scope
from tgfleet.platform.names import SEND_METRICS, SENDS_QUEUE
from tgfleet.platform.periodic import PeriodicThread
from tgfleet.sends import delivery, wake
from tgfleet.sends.outbox import enqueue_deliveries
from tgfleet.sends.sender import Sender

log = logging.getLogger(__name__)

#: Redis key that keeps to one sweep per interval across the cluster.
SWEEP_LOCK = "tgfleet:sends:sweep"
MAX_QUEUE_DELAY_S = 3600.0


class QueueDelay:
    """How long a task now waits in the ``sends`` queue: backlog / recent send rate."""

    def __init__(self) -> None:
        self._last: tuple[float, int] | None = None

    def estimate(self, sender: Sender) -> float | None:
        """Seconds (0 for an empty queue); None until a send rate has been observed."""
        backlog = int(sender.redis.llen(SENDS_QUEUE))
        sent = int(sender.redis.hget(SEND_METRICS, "sent") or 0)
        return self.from_counts(backlog, sent, time.monotonic())

    def from_counts(self, backlog: int, sent: int, now: float) -> float | None:
        """The estimate from a queue length and the sender's running count of sends."""
        last, self._last = self._last, (now, sent)
        if backlog == 0:
            return 0.0
        if last is None or now <= last[0]:
            return None
        rate = max(1.0, (sent - last[1]) / (now - last[0]))
        return min(MAX_QUEUE_DELAY_S, 2 * backlog / rate)


def sweep_overdue(sender: Sender, queue_delay: QueueDelay | None = None) -> int:
    """Re-enqueue rows whose task was lost, and push the ready-sends task of bots whose
    replies are overdue; at most one sweep per interval cluster-wide. Returns how many
    rows and bots that was.

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
        rows, replies = delivery.overdue(s, sender.settings, idle, delay) if idle else ([], [])
    if rows:
        log.warning("sweep: %d outbox rows had lost their task; enqueued again", len(rows))
        enqueue_deliveries(rows)
    if replies:
        log.warning("sweep: replies of bots %s were overdue; their sends task runs again", replies)
        wake.kick(replies)
    return len(rows) + len(replies)


class Sweeper(PeriodicThread):
    """A daemon thread that sweeps every interval (with jitter) until stopped."""

    def __init__(self, sender: Sender) -> None:
        super().__init__("tgfleet-sends-sweep", sender.settings.send_sweep_interval_s)
        self._sender = sender
        self._queue_delay = QueueDelay()

    def tick(self) -> None:
        sweep_overdue(self._sender, self._queue_delay)
