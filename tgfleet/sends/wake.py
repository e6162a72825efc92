"""Waking a bot's ready-sends task: one ``deliver_ready`` per bot at a time, however many
replies its handlers write.

A reply is a plain send (``PLAIN_SEND``): a message to a chat, not part of a broadcast,
with no file to upload. Once its row commits, the writer *wakes* the bot instead of
publishing a task for the row. One Redis script per commit, for every bot it wrote to:

- no ``deliver_ready`` task pending for the bot (no flag): set the flag and push the task
  onto the ``sends`` list, in the same script (a flag is never set without its task);
- one pending (the flag is there): count the wake on the flag (``INCR``) and push
  nothing. Under load most replies cost this, and no task of their own.

The task (``tgfleet.sends.ready``) sets the count to 0 when a round starts (``start``)
and, when the round is over, asks ``finish``: a wake came in since the start (count > 0:
run again, the flag kept), or none (the flag goes, and the next wake pushes a new
task). Both are atomic in Redis, so a row committed before a wake is either seen by the
round that follows the wake's count, or wakes a task of its own: none is left behind.

The flag expires after ``FLAG_TTL_S`` (refreshed by every round): a task lost with its
worker before the transport gives it back (``tgfleet.platform.handoff``) holds the
bot's replies up for no longer than that, and the sweep (``tgfleet.sends.sweep``) sends
any row overdue by the lease before then. Two tasks of one bot at once (after an
expiry) are harmless: each row is claimed once.
"""

from __future__ import annotations

import functools
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
#: KEYS: flags; ARGV: the flags' TTL (ms), then per flag its queue key and message.
_WAKE = """
local pushed = 0
for i, flag in ipairs(KEYS) do
    if redis.call('SET', flag, '0', 'NX', 'PX', ARGV[1]) then
        redis.call('LPUSH', ARGV[2 * i], ARGV[2 * i + 1])
        pushed = pushed + 1
    else
        redis.call('INCR', flag)
    end
end
return pushed
"""
#: KEYS[1]: the flag, KEYS[2]: the sends' metrics. ARGV[1]: the flag's TTL (ms) when the
#: round comes back anyway, else 0; ARGV[2]: its TTL otherwise. 1: run again (flag kept);
#: 0: no wake came in since ``start`` (the flag is gone).
_FINISH = """
redis.call('HINCRBY', KEYS[2], 'ready_rounds', 1)
if tonumber(ARGV[1]) > 0 then
    redis.call('SET', KEYS[1], '0', 'PX', ARGV[1])
    return 1
end
local count = redis.call('GET', KEYS[1])
if count and tonumber(count) > 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
redis.call('DEL', KEYS[1])
return 0
"""


def flag_key(bot_id: int) -> str:
    return f"{FLAG_PREFIX}{bot_id}"


def wake(bot_ids: Iterable[int]) -> int:
    """Wake the ready-sends task of each of ``bot_ids``; how many tasks were pushed.

    A bot with a task pending costs one script that counts the wake (the usual case under
    load); only the others' task messages are built, and pushed by a second script (a
    task may have ended between the two: that script counts a wake on a flag set since)."""
    bots = sorted(set(bot_ids))
    if not bots:
        return 0
    app = current_tgfleet_app()
    if not taskmsg.supports(app):  # no flag without Redis: a task per wake
        for bot in bots:
            app.send_task(DELIVER_READY, kwargs={"bot_id": bot}, queue=SENDS_QUEUE)
        return len(bots)
    client = redis_client(str(app.conf.broker_url))
    scripts = _scripts(client)
    counted = scripts.count(keys=[flag_key(bot) for bot in bots])
    idle = [bot for bot, done in zip(bots, counted, strict=True) if not done]
    if not idle:
        return 0
    args: list[str | bytes | int] = [int(FLAG_TTL_S * 1000)]
    for bot in idle:
        call = TaskCall(DELIVER_READY, SENDS_QUEUE, kwargs={"bot_id": bot})
        key, payload, _ = taskmsg.encode(app, call)
        args += [key, payload]
    return int(scripts.wake(keys=[flag_key(bot) for bot in idle], args=args))


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


def start(client: redis.Redis, bot_id: int) -> None:
    """A round of the bot's task begins: the wakes so far are its to see; the flag is
    (re)set for ``FLAG_TTL_S``."""
    client.set(flag_key(bot_id), 0, px=int(FLAG_TTL_S * 1000))


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
