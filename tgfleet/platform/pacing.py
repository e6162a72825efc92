"""Spreading rate-limited sends over time: slot reservations in Redis.

The :class:`~tgfleet.platform.ratelimit.RateLimiter` is the one gate: a send happens only
after it handed out a token. When it says "wait", though, a thousand tasks of the same
bot would all come back after the same few milliseconds and fight again. The pacer
gives each waiting task its own future slot instead (a GCRA "theoretical arrival time"
per chat, then per bot), so the task re-queues itself once, to the moment its token
will be there. Slots are hints; the limiter still decides.

Stages (carried in the task's kwargs between retries):
* ``NONE``: nothing reserved. A chat slot is reserved; when it is not due now the task
  comes back at it holding the chat slot (``CHAT``).
* ``CHAT``: the chat slot is held; a bot slot is reserved (``BOTH``).
* ``BOTH``: both held; only the limiter's own small wait remains.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import redis

from tgfleet.platform.ratelimit import SAFETY, ChatKind, Limits

# KEYS[1]: bot TAT, KEYS[2]: chat TAT. ARGV: stage, bot_interval, chat_interval.
# No burst tolerance: a task only gets here after the limiter's burst was used up.
# Returns {wait_seconds_as_string, new_stage}.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stage = tonumber(ARGV[1])
local bot_iv = tonumber(ARGV[2])
local chat_iv = tonumber(ARGV[3])
if stage == 0 then
  local tat = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), now)
  local at = tat
  local ttl = math.ceil((tat + chat_iv - now) * 1000) + 1000
  redis.call('SET', KEYS[2], tostring(tat + chat_iv), 'PX', ttl)
  if at - now > bot_iv then
    return {tostring(at - now), '1'}
  end
end
local btat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local bttl = math.ceil((btat + bot_iv - now) * 1000) + 1000
redis.call('SET', KEYS[1], tostring(btat + bot_iv), 'PX', bttl)
return {tostring(btat - now), '2'}
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
    """Reserves future send slots per bot and per chat (see the module docstring)."""

    def __init__(self, client: redis.Redis, prefix: str = "tgfleet:pace") -> None:
        self._prefix = prefix
        self._reserve = client.register_script(_RESERVE)

    def reserve(
        self, bot_id: int, chat_id: int, kind: ChatKind, limits: Limits, stage: Stage
    ) -> Slot:
        bot_interval = 1.0 / (limits.bot_per_s * SAFETY)
        if kind is ChatKind.GROUP:
            chat_interval = 60.0 / (limits.group_per_min * SAFETY)
        else:
            chat_interval = 1.0 / (limits.chat_per_s * SAFETY)
        keys = [f"{self._prefix}:bot:{bot_id}", f"{self._prefix}:chat:{bot_id}:{chat_id}"]
        args = [int(stage), bot_interval, chat_interval]
        wait, new_stage = self._reserve(keys=keys, args=args)
        return Slot(max(0.0, float(wait)), Stage(int(new_stage)))
