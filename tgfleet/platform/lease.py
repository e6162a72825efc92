"""Per-bot leases in Redis: exactly one listener in the cluster listens for a bot.

A lease is ``tgfleet:lease:<bot>`` = ``<owner>|<fencing token>`` with a TTL. The
fencing token grows by one at every acquisition, so work stamped with an old
token (a listener that stalled past its TTL) can be told apart and refused.
A listener renews its leases well within the TTL; when it dies they expire and
another listener takes the bots over.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from tgfleet.platform.names import LEASE_FENCE_PREFIX, LEASE_PREFIX

# KEYS[1] lease, KEYS[2] fence counter; ARGV[1] owner, ARGV[2] ttl ms.
_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current then
  local owner, token = string.match(current, '^(.*)|(%d+)$')
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(token)
  end
  return -1
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
return token
"""

# KEYS[1] lease; ARGV[1] owner|token, ARGV[2] ttl ms. 1 if renewed, 0 if lost.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS[1] lease; ARGV[1] owner|token. Deletes only our own lease.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class Lease:
    bot_id: int
    owner: str
    token: int

    @property
    def value(self) -> str:
        return f"{self.owner}|{self.token}"


class LeaseStore:
    """Acquire, renew and release bot leases for one ``owner`` (a listener process)."""

    def __init__(self, client: redis.Redis, owner: str, ttl_s: float = 15.0) -> None:
        self._client = client
        self.owner = owner
        self.ttl_ms = int(ttl_s * 1000)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @staticmethod
    def key(bot_id: int) -> str:
        return f"{LEASE_PREFIX}{bot_id}"

    def acquire(self, bot_id: int) -> Lease | None:
        """The lease for ``bot_id`` if free (or already ours), else None."""
        token = int(
            self._acquire(
                keys=[self.key(bot_id), f"{LEASE_FENCE_PREFIX}{bot_id}"],
                args=[self.owner, self.ttl_ms],
            )
        )
        return Lease(bot_id, self.owner, token) if token > 0 else None

    def renew(self, lease: Lease) -> bool:
        """Extend ``lease``; False means it was lost and the bot must be dropped."""
        return bool(self._renew(keys=[self.key(lease.bot_id)], args=[lease.value, self.ttl_ms]))

    def release(self, lease: Lease) -> None:
        self._release(keys=[self.key(lease.bot_id)], args=[lease.value])

    def holder(self, bot_id: int) -> tuple[str, int, float] | None:
        """(owner, token, seconds left) of the current lease, or None."""
        with self._client.pipeline() as pipe:
            pipe.get(self.key(bot_id))
            pipe.pttl(self.key(bot_id))
            raw, ttl = pipe.execute()
        if raw is None:
            return None
        owner, _, token = raw.decode().rpartition("|")
        return owner, int(token), max(0, ttl) / 1000
