"""Telegram-like flood limits: token buckets per private chat, per bot and per group, and
the paid broadcast bucket (``allow_paid_floodskip``)."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class FloodLimits:
    """Configurable limits; rates are tokens per second, bursts are bucket sizes."""

    enabled: bool = True
    private_chat_rate: float = 1.0
    private_chat_burst: int = 3
    bot_rate: float = 30.0
    bot_burst: int = 30
    group_rate: float = 20.0 / 60.0
    group_burst: int = 20
    #: Paid broadcasts: messages sent with ``allow_paid_floodskip`` may go up to this rate
    #: in all; each one the bot's own bucket has no token for costs ``PAID_FEE_TENTHS``.
    paid_rate: float = 1000.0
    paid_burst: int = 1000

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def update(self, changes: dict[str, Any]) -> None:
        """Apply ``changes``; unknown names or bad values raise ValueError."""
        known = {f.name: f.type for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown limit {name!r}; known: {', '.join(sorted(known))}")
            if name == "enabled":
                if not isinstance(value, bool):
                    raise ValueError("'enabled' must be true or false")
                self.enabled = value
                continue
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"limit {name!r} must be a positive number, got {value!r}")
            setattr(self, name, int(value) if name.endswith("burst") else float(value))


#: What a message above the free rate costs, in tenths of a Star (0.1 Star).
PAID_FEE_TENTHS = 1
#: :meth:`FloodControl.check_paid`'s answer when the message needs Stars the bot lacks.
NEEDS_STARS = -1


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp

    def wait(self, rate: float, burst: int, now: float) -> float:
        """Seconds until one token is available (0 if one is available now)."""
        self.tokens = min(float(burst), self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / rate


class FloodControl:
    """Decides whether a bot may send now; returns the FLOOD_WAIT seconds otherwise."""

    def __init__(self, limits: FloodLimits | None = None) -> None:
        self.limits = limits or FloodLimits()
        self._buckets: dict[tuple[int, str, int], _Bucket] = {}

    def check(
        self, bot_id: int, chat_id: int, group: bool = False, now: float | None = None
    ) -> int:
        """Take one token from the bot's and the chat's bucket, or return the wait (>= 1)."""
        limits = self.limits
        if not limits.enabled:
            return 0
        now = time.monotonic() if now is None else now
        if group:
            chat_rate, chat_burst, kind = limits.group_rate, limits.group_burst, "group"
        else:
            chat_rate, chat_burst, kind = limits.private_chat_rate, limits.private_chat_burst, "pm"
        bot_bucket = self._bucket((bot_id, "bot", 0), limits.bot_burst, now)
        chat_bucket = self._bucket((bot_id, kind, chat_id), chat_burst, now)
        wait = max(
            bot_bucket.wait(limits.bot_rate, limits.bot_burst, now),
            chat_bucket.wait(chat_rate, chat_burst, now),
        )
        if wait > 0:
            return max(1, math.ceil(wait))
        bot_bucket.tokens -= 1.0
        chat_bucket.tokens -= 1.0
        return 0

    def check_paid(
        self, bot_id: int, chat_id: int, group: bool, can_pay: bool, now: float | None = None
    ) -> tuple[int, bool]:
        """A message sent with ``allow_paid_floodskip``: (wait, charged). It takes a token
        of the paid bucket (the 1,000 msg/s ceiling) and the chat's, and the bot's own
        token when there is one; without one it is charged (``charged``), or, when the
        bot cannot pay, it is refused with ``NEEDS_STARS`` and takes nothing."""
        limits = self.limits
        if not limits.enabled:
            return 0, False
        now = time.monotonic() if now is None else now
        if group:
            chat_rate, chat_burst, kind = limits.group_rate, limits.group_burst, "group"
        else:
            chat_rate, chat_burst, kind = limits.private_chat_rate, limits.private_chat_burst, "pm"
        chat_bucket = self._bucket((bot_id, kind, chat_id), chat_burst, now)
        paid_bucket = self._bucket((bot_id, "paid", 0), limits.paid_burst, now)
        wait = max(
            chat_bucket.wait(chat_rate, chat_burst, now),
            paid_bucket.wait(limits.paid_rate, limits.paid_burst, now),
        )
        if wait > 0:
            return max(1, math.ceil(wait)), False
        bot_bucket = self._bucket((bot_id, "bot", 0), limits.bot_burst, now)
        free = bot_bucket.wait(limits.bot_rate, limits.bot_burst, now) == 0
        if not free and not can_pay:
            return NEEDS_STARS, False
        if free:
            bot_bucket.tokens -= 1.0
        chat_bucket.tokens -= 1.0
        paid_bucket.tokens -= 1.0
        return 0, not free

    def _bucket(self, key: tuple[int, str, int], burst: int, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(burst), now)
        return bucket

    def reset(self) -> None:
        self._buckets.clear()
