"""Scheduled sends: rows that wait in PostgreSQL for their time, enqueued on time.

``queue_message(..., at=...)`` (``ctx.send(..., at=...)``, ``tgfleet send --at``) writes
a ``scheduled`` row whose ``next_attempt_at`` is its time, and enqueues nothing. A
Celery countdown or ETA would sit in a worker's memory for hours and vanish with it; the
row does not. Every sender process runs a :class:`Scheduler` thread that, every
``TICK_S``, takes the rows due within ``HORIZON_S`` (``FOR UPDATE SKIP LOCKED``, so two
schedulers never take the same row), makes them ``queued`` and enqueues each with a
countdown to its exact time: Celery's timer, not the polling, decides how late it is.
From then on it is an ordinary send (rate limits, retries, the sweep).

``cancel`` takes a scheduled row back (``cancelled``); ``scheduled`` lists them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from tgfleet.db import Outbox, OutboxStatus, session_scope
from tgfleet.platform.periodic import PeriodicThread
from tgfleet.platform.redis import redis_client
from tgfleet.platform.settings import Settings
from tgfleet.sends.outbox import Delivery, enqueue_deliveries

log = logging.getLogger(__name__)

#: How often a scheduler looks for rows coming due, and how far ahead it takes them.
TICK_S = 0.5
HORIZON_S = 2.0
#: Rows one tick takes at most (the next tick takes the rest).
TICK_ROWS = 5000


@dataclass(frozen=True)
class Due:
    outbox_id: int
    bot_id: int
    chat_id: int
    at: datetime


_RELEASE = text(
    f"UPDATE outbox o SET status = '{OutboxStatus.QUEUED}' FROM ("
    f"SELECT bot_id, id FROM outbox WHERE status = '{OutboxStatus.SCHEDULED}' "
    "AND next_attempt_at <= now() + make_interval(secs => :horizon) "
    "ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED) d "
    "WHERE o.bot_id = d.bot_id AND o.id = d.id "
    "RETURNING o.id, o.bot_id, o.chat_id, o.next_attempt_at, now() AS now"
)


def release_due(settings: Settings, horizon_s: float = HORIZON_S) -> list[Due]:
    """Make the scheduled rows due within ``horizon_s`` ``queued`` and enqueue each with
    a countdown to its time (at once when it is past); returns them."""
    with session_scope(settings, role="admin") as s:
        rows = s.execute(_RELEASE, {"horizon": horizon_s, "limit": TICK_ROWS}).all()
    by_countdown: dict[float, list[Delivery]] = {}
    released = []
    for row in rows:
        released.append(Due(row.id, row.bot_id, row.chat_id, row.next_attempt_at))
        countdown = round(max(0.0, (row.next_attempt_at - row.now).total_seconds()), 3)
        by_countdown.setdefault(countdown, []).append((row.id, row.bot_id, row.chat_id))
    for countdown, items in by_countdown.items():
        enqueue_deliveries(items, countdown=countdown or None)
    return released


def cancel(session: Session, bot_id: int, outbox_ids: list[int]) -> list[int]:
    """Take scheduled rows back; returns the ids cancelled (a row already queued, sent or
    gone is left as it is)."""
    return list(
        session.scalars(
            update(Outbox)
            .where(
                Outbox.bot_id == bot_id,
                Outbox.id.in_(outbox_ids),
                Outbox.status == OutboxStatus.SCHEDULED,
            )
            .values(status=OutboxStatus.CANCELLED, last_error="cancelled before its time")
            .returning(Outbox.id)
        )
    )


def scheduled(session: Session, bot_id: int | None = None, limit: int = 100) -> list[Outbox]:
    """The scheduled rows (of one bot, or every bot the session sees), soonest first."""
    query = select(Outbox).where(Outbox.status == OutboxStatus.SCHEDULED)
    if bot_id is not None:
        query = query.where(Outbox.bot_id == bot_id)
    return list(session.scalars(query.order_by(Outbox.next_attempt_at).limit(limit)))


#: Redis key that keeps to one release per tick across the cluster.
SCHEDULER_LOCK = "tgfleet:sends:scheduler"


class Scheduler(PeriodicThread):
    """A daemon thread that releases due rows every ``TICK_S`` until stopped. Every
    sender process runs one, and one of them per tick runs the release (a Redis key
    held for most of a tick): the others' queries would find nothing new, and each one
    is a query on the partitioned outbox every half second per process."""

    def __init__(self, settings: Settings) -> None:
        super().__init__("tgfleet-scheduler", TICK_S, jitter=0.8)
        self._settings = settings

    def tick(self) -> None:
        client = redis_client(self._settings.redis_url)
        if not client.set(SCHEDULER_LOCK, "1", nx=True, px=int(TICK_S * 900)):
            return
        released = release_due(self._settings)
        if released:
            log.info("scheduler: %d scheduled sends enqueued", len(released))
