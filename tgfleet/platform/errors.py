"""tgfleet's exception hierarchy: one root, narrow subclasses carrying data."""

from __future__ import annotations

import random


class TgfleetError(Exception):
    """Root of every error tgfleet raises on purpose."""


class ConfigError(TgfleetError):
    """A setting is missing or invalid; the message names the variable."""


class ServiceError(TgfleetError):
    """A local service (PostgreSQL, Redis) could not be started or reached."""


class RetryLater(TgfleetError):
    """An expected wait: the task should be retried after ``countdown`` seconds."""

    def __init__(self, reason: str, countdown: float) -> None:
        super().__init__(f"{reason} (retry in {countdown:.1f}s)")
        self.reason = reason
        self.countdown = countdown


class AppUnavailable(TgfleetError):
    """A bot's app cannot be loaded (no such module, attribute, or not a Router); the
    message says which and what to do."""


class PermanentError(TgfleetError):
    """Retrying cannot help; the work item is failed with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def backoff(attempt: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Capped exponential backoff with full jitter: a delay in [0, min(cap, base * 2**n)]."""
    return random.uniform(0, min(cap, base * 2 ** max(0, attempt)))
