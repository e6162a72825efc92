"""One effective Celery beat in the cluster, however many are started.

``LockedScheduler`` is a ``PersistentScheduler`` whose ``tick()`` only sends tasks while
this process holds ``tgfleet:beat:lock`` in Redis (``SET NX PX``, renewed every third of
``TGFLEET_BEAT_LOCK_TTL_S``). A second ``celery beat`` waits in standby and takes over
when the holder dies and its lock expires.

Every run time the active beat reserves is also written to ``tgfleet:beat:last-run``, and a
beat that takes the lock over starts from those times rather than from its own (stale)
schedule file: a failover neither repeats a job nor skips one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import redis
from celery.beat import PersistentScheduler, ScheduleEntry

log = logging.getLogger(__name__)

LOCK_KEY = "tgfleet:beat:lock"
LAST_RUN_KEY = "tgfleet:beat:last-run"

# KEYS[1] lock; ARGV[1] owner, ARGV[2] ttl ms. 1 if we hold it (taken or renewed), else 0.
_ACQUIRE_OR_RENEW = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if current then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS[1] lock; ARGV[1] owner. Deletes only our own lock.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class BeatLock:
    """The Redis lock that makes one beat the active one."""

    def __init__(self, client: redis.Redis, ttl_s: float, owner: str | None = None) -> None:
        self.client = client
        self.ttl_ms = int(ttl_s * 1000)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._acquire = client.register_script(_ACQUIRE_OR_RENEW)
        self._release = client.register_script(_RELEASE)

    def hold(self) -> bool:
        """Take the lock if it is free, renew it if it is ours; False if another beat has it."""
        return bool(self._acquire(keys=[LOCK_KEY], args=[self.owner, self.ttl_ms]))

    def release(self) -> None:
        self._release(keys=[LOCK_KEY], args=[self.owner])

    def holder(self) -> str | None:
        raw = self.client.get(LOCK_KEY)
        return raw.decode() if isinstance(raw, bytes) else raw


class LockedScheduler(PersistentScheduler):
    """A persistent beat scheduler that only schedules while it holds the beat lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lock: BeatLock | None = None
        self._active = False
        self._next_renew = 0.0
        self._announced_standby = False
        super().__init__(*args, **kwargs)

    # -- the lock --------------------------------------------------------------------------
    @property
    def lock(self) -> BeatLock:
        if self._lock is None:
            settings = getattr(self.app, "settings", None)
            url = settings.redis_url if settings is not None else self.app.conf.broker_url
            ttl = settings.beat_lock_ttl_s if settings is not None else 30.0
            self._lock = BeatLock(redis.Redis.from_url(url), ttl)
        return self._lock

    @property
    def renew_every(self) -> float:
        return self.lock.ttl_ms / 3000

    def _check_lock(self) -> bool:
        now = time.monotonic()
        if now < self._next_renew:
            return self._active
        try:
            holding = self.lock.hold()
        except redis.RedisError as exc:
            log.warning("beat lock unreachable (%s): not scheduling until Redis answers", exc)
            self._next_renew = now + self.renew_every
            self._active = False
            return False
        self._next_renew = now + self.renew_every
        if holding and not self._active:
            log.info(
                "beat %s holds %s: this beat is the active scheduler", self.lock.owner, LOCK_KEY
            )
            self._adopt_shared_run_times()
        elif not holding and self._active:
            log.warning("beat %s lost %s: standing by", self.lock.owner, LOCK_KEY)
        elif not holding and not self._announced_standby:
            log.info("%s held by %s: standing by", LOCK_KEY, self.lock.holder())
            self._announced_standby = True
        self._active = holding
        return holding

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self._check_lock():
            return self.renew_every
        interval = float(super().tick(*args, **kwargs))
        return min(interval, max(0.0, self._next_renew - time.monotonic()))

    # -- run times shared between beats ---------------------------------------------------
    def reserve(self, entry: ScheduleEntry) -> ScheduleEntry:
        new_entry = super().reserve(entry)
        try:
            self.lock.client.hset(
                LAST_RUN_KEY, new_entry.name, str(_timestamp(new_entry.last_run_at))
            )
        except redis.RedisError as exc:
            log.warning("cannot share the run time of %s (%s)", new_entry.name, exc)
        return new_entry

    def _adopt_shared_run_times(self) -> None:
        try:
            shared = self.lock.client.hgetall(LAST_RUN_KEY)
        except redis.RedisError as exc:
            log.warning("cannot read shared run times (%s); using this beat's own", exc)
            return
        for raw_name, raw_at in shared.items():
            name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
            entry = self.schedule.get(name)
            if entry is None:
                continue
            last = datetime.fromtimestamp(float(raw_at), tz=UTC)
            if entry.last_run_at is None or _timestamp(entry.last_run_at) < last.timestamp():
                entry.last_run_at = last
        self._heap = None  # rebuild the due-times heap from the adopted run times

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._lock is not None and self._active:
                with contextlib.suppress(redis.RedisError):  # it expires on its own
                    self.lock.release()
                self._active = False


def _timestamp(value: datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()
