"""Waiting on a condition with a deadline (never a fixed sleep), failing readably."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: How often a condition is polled, seconds.
POLL_S = 0.05


class ExpectationFailed(AssertionError):
    """What a test expected did not happen in time; the message says what was expected
    and what arrived instead."""


def wait_for(
    condition: Callable[[], T | None],
    timeout: float,
    failure: Callable[[], str],
) -> T:
    """Poll ``condition`` until it returns something truthy and return that; after
    ``timeout`` seconds raise ``ExpectationFailed(failure())``.

    ``condition`` may raise ``ExpectationFailed`` itself to fail at once (a bot process
    that died).
    """
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise ExpectationFailed(failure())
        time.sleep(POLL_S)
