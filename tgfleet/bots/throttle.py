"""Per-user throttling shared by every worker process: the ``Throttle`` middleware.

    app.outer_middleware(Throttle(rate=1.0, burst=3, notice="Slow down"))

Each (bot, user) has a token bucket in Redis (``THROTTLE_PREFIX``): ``burst`` updates
at once, then ``rate`` a second. Taking a token is one Lua script, one round trip, so
the limit holds however many processes run the bot's handlers. An update over the limit
is dropped (no handler runs; it is marked processed like any other): a button press is
answered with ``notice`` so the user's spinner stops, a message gets ``notice`` as a
reply at most once every ``notice_every`` seconds, so the notice itself never floods.

**Redelivery.** A handler may run again for the same update (it raised ``RetryLater``,
or its transaction did not commit). The bucket remembers the user's last ``REMEMBERED``
updates that went through and the last ones refused (by message or press id, for
``REMEMBER_S`` seconds at least): the same update gets its first verdict again and takes
no second token. Otherwise a retry could be refused after its first run was let through,
and the update would be lost; and a refusal's notice, rolled back with its transaction,
goes out with the run that commits.

**Redis unreachable.** Throttling fails open: the update goes through and a warning is
logged (once a minute); for ``COOL_OFF_S`` after an error the bucket is not asked, so
an outage does not slow every update down by a connection timeout.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
from redis.commands.core import Script

from tgfleet.bots.context import Context, HandlerUsageError
from tgfleet.bots.router import KINDS, Handler, kind_of
from tgfleet.platform.names import THROTTLE_PREFIX

log = logging.getLogger(__name__)

#: The handler kinds a Throttle counts by default: what a user sends or presses. Blocks
#: and membership changes always go through.
THROTTLED_KINDS = ("message", "edited_message", "callback_query")
#: How many of a user's last updates let through (and, apart, refused) a bucket remembers,
#: and for how long at least: one redelivered within that gets its first verdict again
#: and is not counted twice.
REMEMBERED = 16
REMEMBER_S = 600.0
#: After a Redis error, updates go through unthrottled this long before Redis is asked again.
COOL_OFF_S = 10.0
#: At most one "Redis unreachable" warning per process this often.
WARN_EVERY_S = 60.0

# KEYS[1]: the bucket, a hash: tokens, ts (when tokens was right), noticed (when the last
# notice went out), allowed and refused ("<update id>=<notice>" of the last verdicts of
# each kind: refusals, however many, never push out what went through).
# ARGV: rate (tokens/s), burst, notice_every (s), update id, ttl (ms), how many to remember.
# Returns {allowed, notice} (0/1 each). The time is Redis's: no clock skew between hosts.
_TAKE = """
local function find(list, id)
  local at = string.find(' ' .. list, ' ' .. id .. '=', 1, true)
  if at then return tonumber(string.sub(list, at + #id + 1, at + #id + 1)) end
  return nil
end
local function push(list, entry, keep)
  local kept = {entry}
  for e in string.gmatch(list, '%S+') do
    if #kept >= keep then break end
    kept[#kept + 1] = e
  end
  return table.concat(kept, ' ')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst, id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[4]
local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'noticed', 'allowed', 'refused')
local allowed_ids, refused_ids = h[4] or '', h[5] or ''
if id ~= '' then
  if find(allowed_ids, id) then return {1, 0} end
  local noticed = find(refused_ids, id)
  if noticed then return {0, noticed} end
end
local tokens = tonumber(h[1]) or burst
local ts = tonumber(h[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed, notice = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  local noticed = tonumber(h[3])
  if noticed == nil or now - noticed >= tonumber(ARGV[3]) then
    notice = 1
    redis.call('HSET', KEYS[1], 'noticed', tostring(now))
  end
end
if id ~= '' then
  local keep = tonumber(ARGV[6])
  if allowed == 1 then
    redis.call('HSET', KEYS[1], 'allowed', push(allowed_ids, id .. '=0', keep))
  else
    redis.call('HSET', KEYS[1], 'refused', push(refused_ids, id .. '=' .. notice, keep))
  end
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {allowed, notice}
"""
_script: Script | None = None
_script_lock = threading.Lock()

_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def take_script(client: redis.Redis) -> Script:
    """The bucket script, registered once (called with each caller's own client, it loads
    itself into a Redis that does not have it yet)."""
    global _script
    if _script is None:
        with _script_lock:
            if _script is None:
                _script = client.register_script(_TAKE)
    return _script


@dataclass(frozen=True)
class Verdict:
    """Whether an update may go on, and whether its refusal comes with the notice."""

    allowed: bool
    notice: bool = False


def update_id(ctx: Context) -> str:
    """What tells an update apart from the user's others, and from itself redelivered:
    the press's query id, or the chat and message id (and an edit's date)."""
    inbound = ctx.message
    query_id = getattr(inbound.update, "query_id", None)
    if query_id is not None:
        return f"q{query_id}"
    edited = getattr(inbound.message, "edit_date", None) if inbound.kind == "edit" else None
    suffix = f"e{edited.timestamp():.0f}" if edited is not None else ""
    return f"{inbound.chat_id}:{inbound.tg_message_id}{suffix}"


class Throttle:
    """At most ``burst`` updates of one user at once, then ``rate`` a second, per bot and
    across every worker process (see the module). ``notice`` answers a refused press and,
    at most once every ``notice_every`` seconds (default: ``burst / rate``, the time the
    bucket takes to fill up again), a refused message; it is translated by ``ctx._`` when
    an ``I18n`` middleware ran before. ``kinds`` are the handler kinds counted. Two
    Throttles of one bot need different ``name``s, or they share their buckets.

    As an outer middleware (``router.outer_middleware``) it counts every update of those
    kinds that reaches the router; as an inner one (``router.middleware``), only those a
    handler takes.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        notice: str | None = None,
        *,
        notice_every: float | None = None,
        name: str = "default",
        kinds: Iterable[str] = THROTTLED_KINDS,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"Throttle rate must be > 0 updates a second, got {rate!r}")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"Throttle burst must be a whole number >= 1, got {burst!r}")
        if notice_every is not None and not notice_every > 0:
            raise ValueError(f"Throttle notice_every must be > 0 seconds, got {notice_every!r}")
        if not _NAME.fullmatch(name):
            raise ValueError(f"Throttle name must be letters, digits, '_.-', got {name!r}")
        kinds = frozenset(kinds)
        if not kinds <= set(KINDS):
            raise ValueError(f"Throttle kinds must be among {list(KINDS)}, got {sorted(kinds)}")
        self.rate = float(rate)
        self.burst = burst
        self.notice = notice
        self.notice_every = burst / self.rate if notice_every is None else float(notice_every)
        self.name = name
        self.kinds = kinds
        self._cool_off_until = 0.0
        self._warned_at = -WARN_EVERY_S

    def __repr__(self) -> str:
        return f"Throttle(rate={self.rate}, burst={self.burst}, name={self.name!r})"

    def key(self, bot_id: int, user_id: int) -> str:
        """The Redis key of one user's bucket."""
        return f"{THROTTLE_PREFIX}{bot_id}:{self.name}:{user_id}"

    @property
    def ttl_ms(self) -> int:
        """How long a bucket outlives its last update: until it is full again, its notice
        window is over, and the verdicts it remembers are no longer wanted."""
        return int(max(self.burst / self.rate, self.notice_every, REMEMBER_S) * 1000) + 1000

    def take(self, client: redis.Redis, bot_id: int, user_id: int, update: str) -> Verdict:
        """Take a token for ``update`` of ``user_id`` (one round trip); the same ``update``
        again gets its first verdict and takes nothing."""
        args = (self.rate, self.burst, self.notice_every, update, self.ttl_ms, REMEMBERED)
        script = take_script(client)
        allowed, notice = script(keys=[self.key(bot_id, user_id)], args=args, client=client)
        return Verdict(bool(allowed), bool(notice))

    def verdict(self, ctx: Context) -> Verdict:
        """``take`` for the context's update; lets it through when Redis cannot say."""
        if time.monotonic() < self._cool_off_until:
            return Verdict(True)
        try:
            return self.take(ctx.redis, ctx.bot_id, ctx.user_id, update_id(ctx))
        except (redis.RedisError, HandlerUsageError) as exc:
            self._cool_off_until = time.monotonic() + COOL_OFF_S
            self._warn(ctx, exc)
            return Verdict(True)

    def _warn(self, ctx: Context, error: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning(
                "bot %s: %r cannot reach Redis (%s); updates go through unthrottled",
                ctx.bot_id,
                self,
                error,
            )

    def refuse(self, ctx: Context, verdict: Verdict) -> None:
        """What a refused update gets: a press its answer (the notice, or the platform's
        empty one), a message the notice when the verdict says so."""
        log.debug("bot %s: user %s is throttled; update dropped", ctx.bot_id, ctx.user_id)
        if self.notice is None:
            return
        if ctx.callback is not None:
            if not ctx.answered:
                ctx.answer(ctx._(self.notice))
        elif verdict.notice:
            ctx.reply(ctx._(self.notice))

    def __call__(self, handler: Handler, ctx: Context) -> Any:
        if kind_of(ctx.update) not in self.kinds:
            return handler(ctx)
        verdict = self.verdict(ctx)
        if verdict.allowed:
            return handler(ctx)
        self.refuse(ctx, verdict)
        return None
