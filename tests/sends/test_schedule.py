"""Scheduled sends on real PostgreSQL and Redis: stored, not enqueued, until the
scheduler releases them with a countdown to their time; listed and cancelled."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from tests.support.sends import queued_tasks
from tgfleet.db import Outbox, OutboxStatus, session_scope
from tgfleet.platform.redis import redis_client
from tgfleet.platform.settings import Settings
from tgfleet.sends.outbox import queue_message
from tgfleet.sends.schedule import (
    SCHEDULER_LOCK,
    TICK_S,
    Scheduler,
    cancel,
    release_due,
    scheduled,
)


def test_a_scheduled_send_waits_in_the_database_until_the_scheduler_releases_it(
    migrated: Settings, bot_id: int
) -> None:
    # Given a send due in one second, one due in an hour, and one a second late
    now = datetime.now(UTC)
    with session_scope(migrated, bot_id=bot_id) as s:
        soon = queue_message(s, bot_id, 42, "soon", at=now + timedelta(seconds=1)).id
        later = queue_message(s, bot_id, 43, "later", at=now + timedelta(hours=1)).id
        late = queue_message(s, bot_id, 44, "late", at=now - timedelta(seconds=1)).id
    # Then nothing is enqueued when they are written
    assert queued_tasks(migrated) == []
    # When the scheduler looks ahead
    released = [d for d in release_due(migrated) if d.bot_id == bot_id]
    # Then the two due within its horizon are queued and enqueued, the soon one with an
    # ETA at its time, the late one at once; the other still waits
    assert sorted(d.outbox_id for d in released) == sorted([soon, late])
    tasks = {t["kwargs"]["outbox_id"]: t for t in queued_tasks(migrated)}  # type: ignore[index]
    assert set(tasks) == {soon, late}
    eta = datetime.fromisoformat(str(tasks[soon]["eta"]))
    assert abs((eta - (now + timedelta(seconds=1))).total_seconds()) < 0.05
    assert tasks[late]["eta"] is None
    with session_scope(migrated, bot_id=bot_id) as s:
        rows = {r.id: r.status for r in s.scalars(select(Outbox).where(Outbox.bot_id == bot_id))}
    assert rows == {
        soon: OutboxStatus.QUEUED,
        late: OutboxStatus.QUEUED,
        later: OutboxStatus.SCHEDULED,
    }
    # And a second look takes nothing again
    assert [d for d in release_due(migrated) if d.bot_id == bot_id] == []
    # When the operator lists and cancels what is scheduled
    with session_scope(migrated, bot_id=bot_id) as s:
        assert [r.id for r in scheduled(s, bot_id)] == [later]
        # Then only the row still waiting is cancelled (a queued one has gone its way)
        assert cancel(s, bot_id, [later, soon]) == [later]
    with session_scope(migrated, bot_id=bot_id) as s:
        row = s.get(Outbox, (bot_id, later))
        assert row is not None and row.status is OutboxStatus.CANCELLED
        assert scheduled(s, bot_id) == []
    assert [d for d in release_due(migrated, horizon_s=7200) if d.bot_id == bot_id] == []


def test_two_schedulers_never_release_one_row_twice(migrated: Settings, bot_id: int) -> None:
    at = datetime.now(UTC) + timedelta(seconds=1)
    with session_scope(migrated, bot_id=bot_id) as s:
        ids = [queue_message(s, bot_id, 100 + n, "hi", at=at).id for n in range(200)]
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda _: release_due(migrated), range(4)))
    mine = [d.outbox_id for run in runs for d in run if d.bot_id == bot_id]
    assert sorted(mine) == sorted(ids)


def test_one_scheduler_per_tick_releases_across_the_cluster(
    migrated: Settings, bot_id: int
) -> None:
    # Given two senders' schedulers and a send due now
    first, second = Scheduler(migrated), Scheduler(migrated)
    redis_client(migrated.redis_url).delete(SCHEDULER_LOCK)
    with session_scope(migrated, bot_id=bot_id) as s:
        row = queue_message(s, bot_id, 42, "now", at=datetime.now(UTC)).id
    # When one ticks, and another send comes due before the other ticks in the same tick
    first.tick()
    with session_scope(migrated, bot_id=bot_id) as s:
        other = queue_message(s, bot_id, 43, "now too", at=datetime.now(UTC)).id
    second.tick()
    # Then the second scheduler left it to the next tick, which releases it
    statuses = _statuses(migrated, bot_id)
    assert (statuses[row], statuses[other]) == (OutboxStatus.QUEUED, OutboxStatus.SCHEDULED)
    time.sleep(TICK_S)
    second.tick()
    assert _statuses(migrated, bot_id)[other] is OutboxStatus.QUEUED


def _statuses(settings: Settings, bot_id: int) -> dict[int, OutboxStatus]:
    with session_scope(settings, bot_id=bot_id) as s:
        return {r.id: r.status for r in s.scalars(select(Outbox).where(Outbox.bot_id == bot_id))}
