"""Paid broadcasts: a bot's broadcast above its free rate, up to Telegram's 1,000 msg/s.

Telegram lets a bot send a message over its broadcast limit for 0.1 Star
(``allow_paid_floodskip`` on messages.sendMessage), charged to the bot's Stars balance.
tgfleet does it only for broadcasts (rows with a ``broadcast_id``), never for replies,
and only for a bot that opted in with a budget::

    tgfleet bots paid BOT_ID --per-broadcast 50 --per-day 200    # Stars
    tgfleet bots paid BOT_ID --off

(``bots.settings["paid_broadcasts"]``). A round of a paid broadcast takes its tokens
from :meth:`~tgfleet.sends.ratelimit.RateLimiter.acquire_paid`: the bot's own bucket
first (free), then the paid bucket, each paid message booking 0.1 Star against the
broadcast's and the day's budget in the same Lua call, so no two senders can spend the
same Star. The books are counters in Redis (tenths of a Star, per broadcast and per UTC
day); what was spent is also written as ``stars_spent`` events, and ``tgfleet broadcast
status`` shows it.

When a budget runs out, the broadcast goes on at the free rate. When Telegram answers
BALANCE_TOO_LOW (the bot's Stars are gone), the unsent messages go back to the batch,
paid sends stop for the bot for ``OUT_OF_STARS_S``, and the broadcast goes on at the
free rate. What is booked is an upper bound of what Telegram charges: tgfleet's own
bucket is stricter than Telegram's, so a message it counts as free is free there too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from tgfleet.platform.errors import TgfleetError
from tgfleet.sends.ratelimit import PaidBooks

#: Telegram's ceiling for paid broadcasts, messages per second (free ones included).
PAID_PER_S = 1000.0
#: What one message above the free rate costs, in tenths of a Star.
FEE_TENTHS = 1
#: After BALANCE_TOO_LOW, the bot's broadcasts go at the free rate for this long.
OUT_OF_STARS_S = 600.0
#: The event kind of Stars spent (``events.data``: broadcast_id, messages, stars).
STARS_SPENT = "stars_spent"
#: Telegram's answer when the bot has no Stars left for a paid message.
BALANCE_TOO_LOW = "BALANCE_TOO_LOW"
_BROADCAST_TTL_S = 90 * 86400
_DAY_TTL_S = 2 * 86400


class PaidConfigError(TgfleetError):
    """A paid broadcast budget that cannot be used (the message says which value)."""


@dataclass(frozen=True)
class PaidBudget:
    """A bot's budget for paid broadcasts, in Stars."""

    per_broadcast: float
    per_day: float

    @classmethod
    def parse(cls, raw: Any) -> PaidBudget | None:
        """The budget in ``bots.settings["paid_broadcasts"]`` (None: not opted in).
        Raises PaidConfigError naming a bad value."""
        return None if raw is None else cls.from_json(raw)

    @classmethod
    def from_json(cls, raw: Any) -> PaidBudget:
        """``{"per_broadcast": STARS, "per_day": STARS}``; raises PaidConfigError naming a
        bad value."""
        if not isinstance(raw, dict):
            raise PaidConfigError(f"paid_broadcasts must be an object, got {raw!r}")
        values = []
        for name in ("per_broadcast", "per_day"):
            value = raw.get(name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise PaidConfigError(
                    f"paid_broadcasts.{name} must be a positive number of Stars, got {value!r}"
                )
            values.append(float(value))
        return cls(values[0], values[1])

    def to_json(self) -> dict[str, float]:
        return {"per_broadcast": self.per_broadcast, "per_day": self.per_day}


@dataclass(frozen=True)
class Spent:
    """Stars booked: for one broadcast and for the bot today (UTC)."""

    broadcast: float
    today: float


class StarsLedger:
    """The Stars books in Redis, shared by every sender (see the module docstring)."""

    def __init__(self, client: redis.Redis, prefix: str = "tgfleet:stars") -> None:
        self._client = client
        self._prefix = prefix

    def keys(self, bot_id: int, broadcast_id: int, now: datetime | None = None) -> list[str]:
        """The broadcast's and today's counters (tenths of a Star)."""
        day = (now or datetime.now(UTC)).strftime("%Y%m%d")
        return [
            f"{self._prefix}:broadcast:{bot_id}:{broadcast_id}",
            f"{self._prefix}:day:{bot_id}:{day}",
        ]

    def books(self, bot_id: int, broadcast_id: int, budget: PaidBudget) -> PaidBooks:
        """Where a round of the broadcast books its paid messages."""
        broadcast_key, day_key = self.keys(bot_id, broadcast_id)
        return PaidBooks(
            keys=(broadcast_key, day_key),
            caps=_caps(budget),
            ttls=(_BROADCAST_TTL_S, _DAY_TTL_S),
            fee=FEE_TENTHS,
        )

    def spent(self, bot_id: int, broadcast_id: int) -> Spent:
        raw = self._client.mget(self.keys(bot_id, broadcast_id))
        broadcast, today = (int(value or 0) / 10 for value in raw)
        return Spent(broadcast, today)

    def usable(self, bot_id: int, broadcast_id: int, budget: PaidBudget) -> bool:
        """Whether a paid message may still be booked: the bot has Stars as far as
        tgfleet knows, and both budgets have 0.1 Star left."""
        keys = self.keys(bot_id, broadcast_id)
        broke, *counts = self._client.mget([self._broke_key(bot_id), *keys])
        if broke is not None:
            return False
        caps = _caps(budget)
        return all(int(n or 0) + FEE_TENTHS <= cap for n, cap in zip(counts, caps, strict=True))

    def refund(self, bot_id: int, broadcast_id: int, messages: int) -> None:
        """Give back what was booked for ``messages`` that Telegram did not charge."""
        if messages <= 0:
            return
        with self._client.pipeline(transaction=False) as pipe:
            for key in self.keys(bot_id, broadcast_id):
                pipe.decrby(key, messages * FEE_TENTHS)
            pipe.execute()

    def out_of_stars(self, bot_id: int, seconds: float = OUT_OF_STARS_S) -> None:
        """Telegram said the bot's Stars ran out: no paid sends for ``seconds``."""
        self._client.set(self._broke_key(bot_id), "1", px=int(seconds * 1000))

    def is_out_of_stars(self, bot_id: int) -> bool:
        return bool(self._client.exists(self._broke_key(bot_id)))

    def _broke_key(self, bot_id: int) -> str:
        return f"{self._prefix}:broke:{bot_id}"


def _caps(budget: PaidBudget) -> tuple[int, int]:
    """The budget in tenths of a Star, as the counters count."""
    return round(budget.per_broadcast * 10), round(budget.per_day * 10)


def stars(messages: int) -> float:
    """What ``messages`` paid messages cost, in Stars."""
    return messages * FEE_TENTHS / 10
