"""The error hierarchy's data and the capped exponential backoff with full jitter."""

from __future__ import annotations

import random

import pytest

from tgfleet.platform.errors import (
    ConfigError,
    PermanentError,
    RetryLater,
    ServiceError,
    TgfleetError,
    backoff,
)


@pytest.fixture
def top_of_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jitter always picks the top of its range, so the bound itself is observable."""
    monkeypatch.setattr(random, "uniform", lambda low, high: high)


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "bound"),
    [
        (0, 1.0, 300.0, 1.0),
        (1, 1.0, 300.0, 2.0),
        (5, 0.5, 60.0, 16.0),
        (6, 1.0, 60.0, 60.0),  # 64 capped
        (40, 1.0, 300.0, 300.0),
        (-3, 1.0, 300.0, 1.0),  # a negative attempt counts as the first
    ],
)
def test_backoff_doubles_up_to_its_cap(
    top_of_jitter: None, attempt: int, base: float, cap: float, bound: float
) -> None:
    assert backoff(attempt, base, cap) == bound


def test_backoff_jitter_spans_zero_to_the_bound() -> None:
    # Given many draws of the fourth attempt (bound 8 s)
    random.seed(7)
    draws = [backoff(3) for _ in range(2000)]
    # Then every delay is within [0, 8] and they spread over the whole range (full jitter)
    assert all(0.0 <= d <= 8.0 for d in draws)
    assert min(draws) < 0.5 and max(draws) > 7.5


def test_retry_later_carries_its_reason_and_countdown() -> None:
    exc = RetryLater("chat busy", 2.25)
    assert (exc.reason, exc.countdown) == ("chat busy", 2.25)
    assert str(exc) == "chat busy (retry in 2.2s)"


def test_every_error_shares_one_root() -> None:
    for exc in (RetryLater("x", 1), PermanentError("gone"), ConfigError("x"), ServiceError("x")):
        assert isinstance(exc, TgfleetError)
    assert PermanentError("chat deleted").reason == "chat deleted"
