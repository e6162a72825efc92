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

# What every script below starts with (prepended when it is registered): Redis's clock,
# a bucket's tokens now, and the write of a bucket's tokens (kept as long as the bucket
# takes to fill, plus a second).
_BUCKETS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function level(key, rate, cap)
  local h = redis.call('HMGET', key, 'tokens', 'ts')
  local have = tonumber(h[1]) or cap
  return math.min(cap, have + math.max(0, now - (tonumber(h[2]) or now)) * rate)
end
local function store(key, tokens, rate, cap)
  redis.call('HSET', key, 'tokens', tokens, 'ts', now)
  redis.call('PEXPIRE', key, math.ceil(cap / rate * 1000) + 1000)
end
"""

# KEYS[1]: the bot's pause key; KEYS[2..]: bucket keys.
# ARGV: rate_1, capacity_1, rate_2, capacity_2, ...  (tokens per second, max tokens)
# Returns the wait in seconds as a string: "0" means every token was taken.
_ACQUIRE = """
local paused = tonumber(redis.call('GET', KEYS[1]) or '0')
if paused > now then return tostring(paused - now) end
local n = #KEYS - 1
local wait = 0
local tokens = {}
for i = 1, n do
  local rate = tonumber(ARGV[2 * i - 1])
  local cap = tonumber(ARGV[2 * i])
  local have = level(KEYS[i + 1], rate, cap)
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
  store(KEYS[i + 1], tokens[i] - 1, rate, cap)
end
return '0'
"""

# Tokens for many messages of one bot, each to its own chat, in one call.
# KEYS[1]: the bot's pause key; KEYS[2]: the bot's bucket; KEYS[3..]: the chats' buckets.
# ARGV: bot_rate, bot_capacity, then chat_rate_1, chat_capacity_1, chat_rate_2, ...
# Messages are granted in order while the bot's bucket has a token; a chat without one is
# skipped. Returns {granted (one '1'/'0' per chat), the bot's wait, the shortest wait of a
# skipped chat} (waits as strings, '0' for none; a pause is the bot's wait).
_ACQUIRE_MANY = """
local n = #KEYS - 2
local paused = tonumber(redis.call('GET', KEYS[1]) or '0')
if paused > now then return {string.rep('0', n), tostring(paused - now), '0'} end
local bot_rate, bot_cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local bot = level(KEYS[2], bot_rate, bot_cap)
local granted, bot_wait, chat_wait = {}, 0, 0
for i = 1, n do
  local rate, cap = tonumber(ARGV[2 * i + 1]), tonumber(ARGV[2 * i + 2])
  if bot < 1 then
    bot_wait = (1 - bot) / bot_rate
    for j = i, n do granted[j] = '0' end
    break
  end
  local have = level(KEYS[i + 2], rate, cap)
  if have < 1 then
    granted[i] = '0'
    local w = (1 - have) / rate
    if chat_wait == 0 or w < chat_wait then chat_wait = w end
  else
    granted[i] = '1'
    bot = bot - 1
    store(KEYS[i + 2], have - 1, rate, cap)
  end
end
store(KEYS[2], bot, bot_rate, bot_cap)
return {table.concat(granted), tostring(bot_wait), tostring(chat_wait)}
"""

# A round of a paid broadcast (``tgfleet.sends.paid``): like _ACQUIRE_MANY, but each
# message also takes a token of the paid bucket (Telegram's 1,000 msg/s ceiling), and one
# the bot's own bucket has no token for books FEE tenths of a Star on both budget
# counters, while both have room. Granting stops when the paid bucket or a budget runs out.
# Telegram gives paid messages the bot's free tokens too, so a paid round leaves its free
# bucket empty, without the slack ours keeps (BOT_BURST_S): once a message was paid for,
# the bot's bucket here goes that far below empty, and free sends after the paid ones
# find Telegram's bucket as full as they expect.
# KEYS: pause, bot bucket, paid bucket, broadcast Stars, day Stars, then the chats.
# ARGV: bot_rate, bot_cap, paid_rate, paid_cap, fee, broadcast_cap, day_cap,
#       broadcast_ttl, day_ttl, then chat_rate_1, chat_capacity_1, ...
# Returns {flags ('1' free, '2' paid, '0' not granted), the bot's wait, the shortest wait
# of a skipped chat, '1' if a budget stopped it else '0'}.
_ACQUIRE_PAID = """
local n = #KEYS - 5
local paused = tonumber(redis.call('GET', KEYS[1]) or '0')
if paused > now then return {string.rep('0', n), tostring(paused - now), '0', '0'} end
local bot_rate, bot_cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local paid_rate, paid_cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local fee = tonumber(ARGV[5])
local caps = {tonumber(ARGV[6]), tonumber(ARGV[7])}
local ttls = {tonumber(ARGV[8]), tonumber(ARGV[9])}
local bot = level(KEYS[2], bot_rate, bot_cap)
local paid = level(KEYS[3], paid_rate, paid_cap)
local spent = {}
for k = 1, 2 do spent[k] = tonumber(redis.call('GET', KEYS[k + 3]) or '0') end
local booked = 0
local granted, wait, chat_wait, broke = {}, 0, 0, '0'
for i = 1, n do
  local rate, cap = tonumber(ARGV[2 * i + 8]), tonumber(ARGV[2 * i + 9])
  local free = bot >= 1
  local can_pay = spent[1] + booked + fee <= caps[1] and spent[2] + booked + fee <= caps[2]
  if paid < 1 or (not free and not can_pay) then
    if paid < 1 then wait = (1 - paid) / paid_rate else wait = (1 - bot) / bot_rate; broke = '1' end
    for j = i, n do granted[j] = '0' end
    break
  end
  local have = level(KEYS[i + 5], rate, cap)
  if have < 1 then
    granted[i] = '0'
    local w = (1 - have) / rate
    if chat_wait == 0 or w < chat_wait then chat_wait = w end
  else
    paid = paid - 1
    if free then
      bot = bot - 1
      granted[i] = '1'
    else
      booked = booked + fee
      granted[i] = '2'
    end
    store(KEYS[i + 5], have - 1, rate, cap)
  end
end
if booked > 0 then bot = math.min(bot, 0) - bot_cap end
store(KEYS[2], bot, bot_rate, bot_cap)
store(KEYS[3], paid, paid_rate, paid_cap)
if booked > 0 then
  for k = 1, 2 do
    redis.call('INCRBY', KEYS[k + 3], booked)
    redis.call('EXPIRE', KEYS[k + 3], ttls[k])
  end
end
return {table.concat(granted), tostring(wait), tostring(chat_wait), broke}
"""

# KEYS[1]: pause key; ARGV[1]: seconds. Extends, never shortens, a pause.
_PAUSE = """
local until_ = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > current then
  redis.call('SET', KEYS[1], tostring(until_), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
  return tostring(until_)
end
return tostring(current)
"""


@dataclass(frozen=True)
class PaidBooks:
    """Where a paid round books its Stars: two counters (the broadcast's, the day's)
    with their caps and lifetimes, and the fee per message (all in tenths of a Star)."""

    keys: tuple[str, str]
    caps: tuple[int, int]
    ttls: tuple[int, int]
    fee: int


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


@dataclass(frozen=True)
class Grant:
    """What :meth:`RateLimiter.acquire_many` handed out: a flag per chat, in order, and
    the waits: ``bot_wait`` until the bot's next token (or the end of its pause),
    ``chat_wait`` until the first skipped chat's next token (0: none)."""

    granted: tuple[bool, ...]
    bot_wait: float
    chat_wait: float


@dataclass(frozen=True)
class PaidGrant:
    """What :meth:`RateLimiter.acquire_paid` handed out: per chat, in order, whether it
    was granted and whether it is paid for; the waits as in :class:`Grant` (``bot_wait``:
    until the paid bucket's next token, or the bot's when a budget stopped it); whether a
    budget ran out (``budget_out``)."""

    granted: tuple[bool, ...]
    paid: tuple[bool, ...]
    bot_wait: float
    chat_wait: float
    budget_out: bool


class RateLimiter:
    """Token buckets shared by every sender through Redis."""

    def __init__(self, client: redis.Redis, prefix: str = "tgfleet:rl") -> None:
        self._client = client
        self._prefix = prefix
        self._acquire = client.register_script(_BUCKETS + _ACQUIRE)
        self._acquire_many = client.register_script(_BUCKETS + _ACQUIRE_MANY)
        self._acquire_paid = client.register_script(_BUCKETS + _ACQUIRE_PAID)
        self._pause = client.register_script(_BUCKETS + _PAUSE)

    def _pause_key(self, bot_id: int) -> str:
        return f"{self._prefix}:pause:{bot_id}"

    def acquire(self, bot_id: int, chat_id: int, kind: ChatKind, limits: Limits) -> float:
        """Take a token for one message, or return the seconds to wait (nothing taken)."""
        bot_rate = limits.bot_per_s * SAFETY
        chat_rate, chat_cap = _chat_bucket(kind, limits)
        keys = [
            self._pause_key(bot_id),
            f"{self._prefix}:bot:{bot_id}",
            f"{self._prefix}:chat:{bot_id}:{chat_id}",
        ]
        args = [bot_rate, max(1.0, bot_rate * BOT_BURST_S), chat_rate, chat_cap]
        return float(self._acquire(keys=keys, args=args))

    def acquire_many(self, bot_id: int, chats: list[tuple[int, ChatKind]], limits: Limits) -> Grant:
        """Tokens for one message to each of ``chats`` (distinct chats) in one round trip:
        granted in order while the bot's bucket lasts, a chat without a token skipped."""
        bot_rate = limits.bot_per_s * SAFETY
        keys = [self._pause_key(bot_id), f"{self._prefix}:bot:{bot_id}"]
        args: list[float] = [bot_rate, max(1.0, bot_rate * BOT_BURST_S)]
        for chat_id, kind in chats:
            keys.append(f"{self._prefix}:chat:{bot_id}:{chat_id}")
            args.extend(_chat_bucket(kind, limits))
        flags, bot_wait, chat_wait = self._acquire_many(keys=keys, args=args)
        text = flags.decode() if isinstance(flags, bytes) else str(flags)
        return Grant(tuple(flag == "1" for flag in text), float(bot_wait), float(chat_wait))

    def acquire_paid(
        self,
        bot_id: int,
        chats: list[tuple[int, ChatKind]],
        limits: Limits,
        paid_per_s: float,
        stars: PaidBooks,
    ) -> PaidGrant:
        """Tokens for one message of a paid broadcast to each of ``chats``: free while the
        bot's bucket lasts, then paid (booked on ``stars``) up to ``paid_per_s`` in all."""
        bot_rate = limits.bot_per_s * SAFETY
        paid_rate = paid_per_s * SAFETY
        keys = [
            self._pause_key(bot_id),
            f"{self._prefix}:bot:{bot_id}",
            f"{self._prefix}:paid:{bot_id}",
            *stars.keys,
        ]
        args: list[float] = [bot_rate, max(1.0, bot_rate * BOT_BURST_S)]
        args += [paid_rate, max(1.0, paid_rate * BOT_BURST_S), stars.fee, *stars.caps, *stars.ttls]
        for chat_id, kind in chats:
            keys.append(f"{self._prefix}:chat:{bot_id}:{chat_id}")
            args.extend(_chat_bucket(kind, limits))
        flags, wait, chat_wait, broke = self._acquire_paid(keys=keys, args=args)
        text = flags.decode() if isinstance(flags, bytes) else str(flags)
        return PaidGrant(
            granted=tuple(flag != "0" for flag in text),
            paid=tuple(flag == "2" for flag in text),
            bot_wait=float(wait),
            chat_wait=float(chat_wait),
            budget_out=broke in (b"1", "1"),
        )

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


def _chat_bucket(kind: ChatKind, limits: Limits) -> tuple[float, float]:
    """(tokens per second, capacity) of a chat's bucket."""
    if kind is ChatKind.GROUP:
        return limits.group_per_min / 60 * SAFETY, float(GROUP_BURST)
    return limits.chat_per_s * SAFETY, float(limits.chat_burst)
