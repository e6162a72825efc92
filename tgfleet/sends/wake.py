"""Waking a bot's ready-sends task: one ``deliver_ready`` per bot at a time, however many
replies its handlers write.

A reply is a plain send (``PLAIN_SEND``): a message to a chat, not part of a broadcast,
with no file to upload. Once its row commits, the writer *wakes* the bot instead of
publishing a task for the row. One Redis script per commit, for every bot it wrote to:

- no ``deliver_ready`` task pending for the bot (no flag): set the flag and push the task
  onto the ``sends`` list, in the same script (a flag is never set without its task);
- one pending (the flag is there): count the wake on the flag (``INCR``) and push
  nothing. Under load most replies cost this, and no task of their own.

When the task's round is over it asks ``finish``: did a wake come in since the round
before (count > 0: the count goes back to 0 and the task runs again, the flag kept), or
none (the flag goes, and the next wake pushes a new task)? Both are atomic in Redis. A
row committed before its wake is seen by any round that starts after the wake; if the
wake came before ``finish``, another round follows; if after, the wake pushed a task
of its own. None is left behind.

The flag expires after ``FLAG_TTL_S`` (set again by each wake that pushes a task and by
each round that comes back later): a task lost with its worker before the transport
gives it back (``tgfleet.platform.handoff``) holds the bot's replies up for no longer than
that, and the sweep (``tgfleet.sends.sweep``) pushes a new task for replies overdue by the
lease before then. Two tasks of one bot at once (after an expiry) are harmless: each row
is claimed once.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from typing import Any

import redis

from tgfleet.platform import taskmsg
from tgfleet.platform.celery_app import current_tgfleet_app
from tgfleet.platform.names import DELIVER_READY, SEND_METRICS, SENDS_QUEUE
from tgfleet.platform.redis import redis_client
from tgfleet.platform.taskmsg import TaskCall

#: SQL: an ``outbox`` row the ready-sends task delivers (its rows' table alias: none).
PLAIN_SEND = "op = 'send' AND broadcast_id IS NULL AND NOT coalesce(media ? 'upload', false)"
FLAG_PREFIX = "tgfleet:sends:ready:"
FLAG_TTL_S = 30.0

#: KEYS: flags. Counts a wake on each flag that is there; per flag, 1 if it was.
_COUNT = """
local counted = {}
for i, flag in ipairs(KEYS) do
    if redis.call('EXISTS', flag) == 1 then
        redis.call('INCR', flag)
        counted[i] = 1
    else
        counted[i] = 0
    end
end
return counted
"""
#: KEYS: flags; ARGV: the flags' TTL (ms), then per flag its queue key and message. Per
#: flag, 1 if it pushed the task.
_WAKE = """
local pushed = {}
for i, flag in ipairs(KEYS) do
    if redis.call('SET', flag, '0', 'NX', 'PX', ARGV[1]) then
        redis.call('LPUSH', ARGV[2 * i], ARGV[2 * i + 1])
        pushed[i] = 1
    else
        redis.call('INCR', flag)
        pushed[i] = 0
    end
end
return pushed
"""
#: KEYS[1]: the flag, KEYS[2]: the sends' metrics. ARGV[1]: the flag's TTL (ms) when the
#: round comes back anyway, else 0; ARGV[2]: its TTL otherwise. 1: run again (flag kept,
#: count 0); 0: no wake came in since the round before (the flag is gone).
_FINISH = """
redis.call('HINCRBY', KEYS[2], 'ready_rounds', 1)
if tonumber(ARGV[1]) > 0 then
    redis.call('SET', KEYS[1], '0', 'PX', ARGV[1])
    return 1
end
local count = redis.call('GET', KEYS[1])
if count and tonumber(count) > 0 then
    redis.call('SET', KEYS[1], '0', 'PX', ARGV[2])
    return 1
end
redis.call('DEL', KEYS[1])
return 0
"""
#: A wake that found its bot's task pending less than this long ago counts first (one
#: script, no task message built); otherwise it builds the message and sets the flag.
BUSY_S = 1.0
_busy: dict[int, float] = {}


def flag_key(bot_id: int) -> str:
    return f"{FLAG_PREFIX}{bot_id}"


def wake(bot_ids: Iterable[int]) -> int:
    """Wake the ready-sends task of each of ``bot_ids``; how many tasks were pushed.

    One script for all of them. A bot this process found with a task pending in the last
    ``BUSY_S`` is counted first, without building a task message (the usual case under
    load); the others' messages are built and go in the script that sets their flags (it
    counts a wake on a flag set since, as the counting one does)."""
    bots = sorted(set(bot_ids))
    if not bots:
        return 0
    app = current_tgfleet_app()
    if not taskmsg.supports(app):  # no flag without Redis: a task per wake
        for bot in bots:
            app.send_task(DELIVER_READY, kwargs={"bot_id": bot}, queue=SENDS_QUEUE)
        return len(bots)
    scripts = _scripts(redis_client(str(app.conf.broker_url)))
    now = time.monotonic()
    busy = [bot for bot in bots if now - _busy.get(bot, -BUSY_S) < BUSY_S]
    idle = [bot for bot in bots if bot not in busy]
    if busy:
        for bot, counted in zip(busy, scripts.count(keys=[flag_key(b) for b in busy]), strict=True):
            if counted:
                _busy[bot] = now
            else:
                idle.append(bot)
    if not idle:
        return 0
    args: list[str | bytes | int] = [int(FLAG_TTL_S * 1000)]
    for bot in idle:
        call = TaskCall(DELIVER_READY, SENDS_QUEUE, kwargs={"bot_id": bot})
        key, payload, _ = taskmsg.encode(app, call)
        args += [key, payload]
    pushed = [int(p) for p in scripts.wake(keys=[flag_key(b) for b in idle], args=args)]
    for bot, was_pushed in zip(idle, pushed, strict=True):
        if was_pushed:  # the task it pushed will most likely be done by the next wake
            _busy.pop(bot, None)
        else:
            _busy[bot] = now
    return sum(pushed)


def kick(bot_ids: Iterable[int]) -> int:
    """Push a ready-sends task for each of ``bot_ids`` whatever its flag says: for the
    sweep, when a bot's replies are overdue (a task lost with its worker can leave its
    flag behind for up to ``FLAG_TTL_S``)."""
    bots = sorted(set(bot_ids))
    if bots:
        app = current_tgfleet_app()
        if taskmsg.supports(app):
            redis_client(str(app.conf.broker_url)).delete(*(flag_key(bot) for bot in bots))
    return wake(bots)


def finish(client: redis.Redis, bot_id: int, again_in: float | None = None) -> bool:
    """A round is over (counted in ``tgfleet:metrics:sends`` ``ready_rounds``). With
    ``again_in`` (seconds) it comes back then, and its flag outlives the wait; else True
    if a wake came in during it (run again at once, flag kept), False if none (the flag
    is gone: the next wake pushes a new task)."""
    ttl_ms = int(FLAG_TTL_S * 1000)
    again_ms = 0 if again_in is None else int(again_in * 1000) + ttl_ms
    keys = [flag_key(bot_id), SEND_METRICS]
    return bool(_scripts(client).finish(keys=keys, args=[again_ms, ttl_ms]))


class _Scripts:
    """The scripts, registered with one client (sent by hash once loaded)."""

    def __init__(self, client: redis.Redis) -> None:
        self.count: Any = client.register_script(_COUNT)
        self.wake: Any = client.register_script(_WAKE)
        self.finish: Any = client.register_script(_FINISH)


@functools.lru_cache(maxsize=16)
def _scripts(client: redis.Redis) -> _Scripts:
    return _Scripts(client)
