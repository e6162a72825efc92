"""Spreading sends over time: slot reservations in Redis, in front of the rate limiter.

The :class:`~tgfleet.sends.ratelimit.RateLimiter` is the one gate: a send happens only
after it handed out a token. Asking it alone has two costs, though: a thousand waiting
tasks of one bot would all come back after the same few milliseconds and fight again,
and a bot's whole burst allowance would be spent at once, leaving Telegram's bucket no
slack for the jitter between taking a token and Telegram seeing the message.

So every first attempt reserves a slot here (GCRA: a "theoretical arrival time" per
chat, then per bot, with a small burst tolerance). A slot in the future sends the task
back to the queue once, to that moment, without touching the database; a slot due now
goes on to the limiter, which nearly always agrees. Slots are hints; the limiter decides.

Stages (carried in the task's kwargs between retries):
* ``NONE``: nothing reserved. A chat slot is reserved; when it is not due yet the task
  comes back at it holding the chat slot (``CHAT``).
* ``CHAT``: the chat slot is held; a bot slot is reserved (``BOTH``).
* ``BOTH``: both held; only the limiter's own (small) wait remains.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import redis

from tgfleet.sends.ratelimit import BOT_BURST_S, GROUP_BURST, SAFETY, ChatKind, Limits

#: Bursts the pacer lets through per bot: well under Telegram's (about 30), so a bot's
#: bucket at Telegram keeps slack for latency jitter. The steady rate is unchanged.
BOT_BURST = 8

# KEYS[1]: bot TAT, KEYS[2]: chat TAT.
# ARGV: stage, bot_interval, bot_tolerance, chat_interval, chat_tolerance.
# Returns {wait_seconds_as_string, new_stage}.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stage = tonumber(ARGV[1])
local bot_iv, bot_tol = tonumber(ARGV[2]), tonumber(ARGV[3])
local chat_iv, chat_tol = tonumber(ARGV[4]), tonumber(ARGV[5])
if stage == 0 then
  local tat = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), now)
  local at = math.max(now, tat - chat_tol)
  local ttl = math.ceil((tat + chat_iv - now) * 1000) + 1000
  redis.call('SET', KEYS[2], tostring(tat + chat_iv), 'PX', ttl)
  if at - now > bot_iv then
    return {tostring(at - now), '1'}
  end
end
local btat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local bat = math.max(now, btat - bot_tol)
local bttl = math.ceil((btat + bot_iv - now) * 1000) + 1000
redis.call('SET', KEYS[1], tostring(btat + bot_iv), 'PX', bttl)
return {tostring(bat - now), '2'}
"""

# KEYS[1]: the bot's batch TAT. ARGV: seconds per message, tolerance, messages.
# Returns the wait (a string) until the batch's slot; books its messages' time after it.
_RESERVE_BATCH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local iv, tol, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local at = math.max(now, tat - tol)
local ttl = math.ceil((tat + n * iv - now) * 1000) + 1000
redis.call('SET', KEYS[1], tostring(tat + n * iv), 'PX', ttl)
return tostring(at - now)
"""


class Stage(IntEnum):
    NONE = 0
    CHAT = 1
    BOTH = 2


@dataclass(frozen=True)
class Slot:
    wait: float
    stage: Stage


class SendPacer:
    """Reserves send slots per bot and per chat (see the module docstring)."""

    def __init__(self, client: redis.Redis, prefix: str = "tgfleet:pace") -> None:
        self._client = client
        self._prefix = prefix
        self._reserve = client.register_script(_RESERVE)
        self._reserve_batch = client.register_script(_RESERVE_BATCH)

    def booked_ahead(self, bot_id: int) -> float:
        """Seconds the bot is booked ahead, by single sends or by batches: the last slot
        plus one burst (0: none ahead)."""
        raw = self._client.mget(f"{self._prefix}:bot:{bot_id}", f"{self._prefix}:batch:{bot_id}")
        booked = [float(value) for value in raw if value is not None]
        if not booked:
            return 0.0
        seconds, micros = self._client.time()
        return max(0.0, max(booked) - (seconds + micros / 1_000_000))

    def reserve_batch(
        self, bot_id: int, count: int, limits: Limits, per_s: float | None = None
    ) -> float:
        """Seconds until a batch of ``count`` messages of the bot may start, booking their
        time: the bot's batches come back one after another at its rate (``per_s``, for
        a paid broadcast), not all at once (single sends have slots of their own and are
        not held up behind batches)."""
        interval = 1.0 / ((per_s or limits.bot_per_s) * SAFETY)
        keys = [f"{self._prefix}:batch:{bot_id}"]
        # A batch may start as early as the limiter's burst allows: half a second early.
        wait = self._reserve_batch(keys=keys, args=[interval, BOT_BURST_S, count])
        return max(0.0, float(wait))

    def reserve(
        self, bot_id: int, chat_id: int, kind: ChatKind, limits: Limits, stage: Stage
    ) -> Slot:
        """The slot for one message; ``wait`` 0 means now (then ``stage`` is BOTH)."""
        bot_interval = 1.0 / (limits.bot_per_s * SAFETY)
        if kind is ChatKind.GROUP:
            chat_interval, burst = 60.0 / (limits.group_per_min * SAFETY), GROUP_BURST
        else:
            chat_interval, burst = 1.0 / (limits.chat_per_s * SAFETY), limits.chat_burst
        keys = [f"{self._prefix}:bot:{bot_id}", f"{self._prefix}:chat:{bot_id}:{chat_id}"]
        args = [
            int(stage),
            bot_interval,
            (BOT_BURST - 1) * bot_interval,
            chat_interval,
            (burst - 1) * chat_interval,
        ]
        wait, new_stage = self._reserve(keys=keys, args=args)
        return Slot(max(0.0, float(wait)), Stage(int(new_stage)))
