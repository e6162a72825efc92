"""A broadcast an operator can watch, pause, resume and cancel.

A broadcast is the outbox rows with one ``broadcast_id`` (``tgfleet send`` makes them).
Everything here is one statement on those rows, so it works from any terminal, holds
across every process restart, and needs nothing from the senders:

* **pause**: its ``queued``/``retrying``/``scheduled`` rows become ``paused``. A task
  already on its way finds them not claimable and does nothing; a row being sent at that
  moment finishes.
* **resume**: its ``paused`` rows become ``queued`` and are enqueued (as batches), now.
* **cancel**: its rows not yet sent become ``cancelled``.
* **progress**: the rows by status, those that failed because the user blocked the bot,
  the send rate over the last ``RATE_WINDOW_S`` and the time left at that rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tgfleet.db import Outbox, OutboxStatus
from tgfleet.sends.delivery import BLOCKED_REASON, stars_spent
from tgfleet.sends.outbox import enqueue_after_commit

RATE_WINDOW_S = 30.0
#: Rows a broadcast may still send (what pause and cancel take).
_WAITING = (OutboxStatus.QUEUED, OutboxStatus.RETRYING, OutboxStatus.SCHEDULED)
_PENDING = (*_WAITING, OutboxStatus.SENDING, OutboxStatus.PAUSED)


@dataclass(frozen=True)
class Progress:
    """Where one broadcast stands."""

    counts: dict[str, int]
    blocked: int
    rate: float  # sent per second over the last RATE_WINDOW_S
    total: int
    #: Messages sent paid (``tgfleet.sends.paid``) and the Stars they cost.
    paid: int = 0
    stars: float = 0.0

    @property
    def pending(self) -> int:
        return sum(self.counts.get(status.value, 0) for status in _PENDING)

    @property
    def done(self) -> bool:
        return self.pending == 0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate (None while nothing is being sent)."""
        if self.done:
            return 0.0
        return self.pending / self.rate if self.rate > 0 else None


def progress(session: Session, bot_id: int, broadcast_id: int) -> Progress:
    """Counts by status, blocked users, the recent rate, the Stars spent (one round trip
    each)."""
    mine = (Outbox.bot_id == bot_id, Outbox.broadcast_id == broadcast_id)
    counts = {
        status.value: n
        for status, n in session.execute(
            select(Outbox.status, func.count()).where(*mine).group_by(Outbox.status)
        )
    }
    since = func.now() - timedelta(seconds=RATE_WINDOW_S)
    recent, blocked = session.execute(
        select(
            func.count().filter(Outbox.sent_at >= since),
            func.count().filter(
                Outbox.status == OutboxStatus.FAILED, Outbox.last_error == BLOCKED_REASON
            ),
        ).where(*mine)
    ).one()
    paid, stars = stars_spent(session, bot_id, broadcast_id)
    rate = recent / RATE_WINDOW_S
    return Progress(counts, int(blocked), rate, sum(counts.values()), paid, stars)


def pause(session: Session, bot_id: int, broadcast_id: int) -> int:
    """Hold the broadcast's rows not yet sent; returns how many."""
    return _move(session, bot_id, broadcast_id, _WAITING, OutboxStatus.PAUSED)


def cancel(session: Session, bot_id: int, broadcast_id: int) -> int:
    """Take back the broadcast's rows not yet sent (paused ones too); returns how many."""
    return _move(
        session, bot_id, broadcast_id, (*_WAITING, OutboxStatus.PAUSED), OutboxStatus.CANCELLED
    )


def resume(session: Session, bot_id: int, broadcast_id: int) -> int:
    """Queue the paused rows again, now, enqueued after ``session`` commits."""
    rows = session.execute(
        update(Outbox)
        .where(
            Outbox.bot_id == bot_id,
            Outbox.broadcast_id == broadcast_id,
            Outbox.status == OutboxStatus.PAUSED,
        )
        .values(status=OutboxStatus.QUEUED, next_attempt_at=func.now())
        .returning(Outbox.id, Outbox.chat_id)
    ).all()
    enqueue_after_commit(session, [(r.id, bot_id, r.chat_id) for r in sorted(rows)])
    return len(rows)


def _move(
    session: Session,
    bot_id: int,
    broadcast_id: int,
    from_statuses: tuple[OutboxStatus, ...],
    to: OutboxStatus,
) -> int:
    moved = session.execute(
        update(Outbox)
        .where(
            Outbox.bot_id == bot_id,
            Outbox.broadcast_id == broadcast_id,
            Outbox.status.in_(from_statuses),
        )
        .values(status=to)
        .returning(Outbox.id)
    ).all()
    return len(moved)
