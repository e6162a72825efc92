"""Cluster-wide send rate limits: token buckets in Redis, taken atomically by one Lua script.

Every sender process on every machine asks the same Redis, so it is the single
source of truth. A call either takes one token from every bucket that applies
(the bot's, and the chat's) or takes none and says how long to wait; it never
blocks. A FloodWait from Telegram pauses the whole bot until a deadline that
every sender respects.

Buckets (defaults from Telegram's published limits, configurable per bot):
* per bot: ``rate_bot_per_s`` (burst: half a second's worth, ``BOT_BURST_S``);
* per private chat: ``rate_chat_per_s`` with burst ``rate_chat_burst``;
* per group: ``rate_group_per_min`` per minute (burst: 3).
Rates are applied with a small safety margin (``SAFETY``) so jitter between the
moment a token is taken and the moment Telegram sees the request never makes
tgfleet exceed the real limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from tgfleet.platform.settings import Settings

#: Fraction of the configured rate tgfleet actually uses.
SAFETY = 0.97
#: Seconds of tokens a bot's bucket holds. Telegram's holds about a second's worth, so
#: after an idle spell half of it stays unused: slack for requests that were handed
#: their tokens apart but reach Telegram together (a stalled process, a busy network).
#: With a full second's worth, 40 ms of such bunching right after a pause was a FLOOD_WAIT.
BOT_BURST_S = 0.5
GROUP_BURST = 3

# KEYS[1]: the bot's pause key; KEYS[2..]: bucket keys.
# ARGV: rate_1, capacity_1, rate_2, capacity_2, ...  (tokens per second, max tokens)
# Returns the wait in seconds as a string: "0" means every token was taken.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local paused = tonumber(redis.call('GET', KEYS[1]) or '0')
if paused > now then return tostring(paused - now) end
local n = #KEYS - 1
local wait = 0
local tokens = {}
for i = 1, n do
  local rate = tonumber(ARGV[2 * i - 1])
  local cap = tonumber(ARGV[2 * i])
  local h = redis.call('HMGET', KEYS[i + 1], 'tokens', 'ts')
  local have = tonumber(h[1]) or cap
  local ts = tonumber(h[2]) or now
  have = math.min(cap, have + math.max(0, now - ts) * rate)
  tokens[i] = have
  if have < 1 then
    local w = (1 - have) / rate
    if w > wait then wait = w end
  end
end
if wait > 0 then return tostring(wait) end
for i = 1, n do
  local rate = tonumber(ARGV[2 * i - 1])
  local cap = tonumber(ARGV[2 * i])
  redis.call('HSET', KEYS[i + 1], 'tokens', tokens[i] - 1, 'ts', now)
  redis.call('PEXPIRE', KEYS[i + 1], math.ceil(cap / rate * 1000) + 1000)
end
return '0'
"""

# KEYS[1]: pause key; ARGV[1]: seconds. Extends, never shortens, a pause.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local until_ = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > current then
  redis.call('SET', KEYS[1], tostring(until_), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
  return tostring(until_)
end
return tostring(current)
"""


class ChatKind(StrEnum):
    PRIVATE = "private"
    GROUP = "group"


@dataclass(frozen=True)
class Limits:
    """One bot's limits; ``from_settings`` gives the deployment's defaults."""

    bot_per_s: float
    chat_per_s: float
    chat_burst: int
    group_per_min: float

    @classmethod
    def from_settings(cls, settings: Settings, overrides: dict[str, Any] | None = None) -> Limits:
        """Defaults from Settings, with a bot's own values (``bots.settings['limits']``)."""
        values = {
            "bot_per_s": settings.rate_bot_per_s,
            "chat_per_s": settings.rate_chat_per_s,
            "chat_burst": settings.rate_chat_burst,
            "group_per_min": settings.rate_group_per_min,
        }
        for key, value in (overrides or {}).items():
            is_number = isinstance(value, int | float) and not isinstance(value, bool)
            if key in values and is_number and value > 0:
                values[key] = value
        return cls(**values)  # type: ignore[arg-type]


class RateLimiter:
    """Token buckets shared by every sender through Redis."""

    def __init__(self, client: redis.Redis, prefix: str = "tgfleet:rl") -> None:
        self._client = client
        self._prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)
        self._pause = client.register_script(_PAUSE)

    def _pause_key(self, bot_id: int) -> str:
        return f"{self._prefix}:pause:{bot_id}"

    def acquire(self, bot_id: int, chat_id: int, kind: ChatKind, limits: Limits) -> float:
        """Take a token for one message, or return the seconds to wait (nothing taken)."""
        bot_rate = limits.bot_per_s * SAFETY
        if kind is ChatKind.GROUP:
            chat_rate, chat_cap = limits.group_per_min / 60 * SAFETY, float(GROUP_BURST)
        else:
            chat_rate, chat_cap = limits.chat_per_s * SAFETY, float(limits.chat_burst)
        keys = [
            self._pause_key(bot_id),
            f"{self._prefix}:bot:{bot_id}",
            f"{self._prefix}:chat:{bot_id}:{chat_id}",
        ]
        args = [bot_rate, max(1.0, bot_rate * BOT_BURST_S), chat_rate, chat_cap]
        return float(self._acquire(keys=keys, args=args))

    def pause(self, bot_id: int, seconds: float) -> float:
        """Pause every send of ``bot_id`` for ``seconds`` (FloodWait); returns the deadline."""
        return float(self._pause(keys=[self._pause_key(bot_id)], args=[seconds]))

    def paused_for(self, bot_id: int) -> float:
        """Seconds left in the bot's pause (0 when it is not paused)."""
        raw = self._client.get(self._pause_key(bot_id))
        if raw is None:
            return 0.0
        seconds, micros = self._client.time()
        return max(0.0, float(raw) - (seconds + micros / 1_000_000))
