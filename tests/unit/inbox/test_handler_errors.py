"""The drain's bookkeeping of handler errors: retry marks, steps, dead-letter reasons."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tgfleet.inbox.drain import DrainResult, Step
from tgfleet.inbox.failures import HandlerFailed, HandlerRetry, retry_of
from tgfleet.platform.errors import RetryLater


@pytest.mark.parametrize(
    ("retry", "expected"),
    [
        (None, None),
        ({"at": 12.5, "n": 2, "reason": "x"}, (12.5, 2)),
        (json.dumps({"at": 1, "n": 1}), (1.0, 1)),
        ("not json object", None),
    ],
)
def test_a_retry_mark_is_read_from_the_drain_row(
    retry: object, expected: tuple[float, int] | None
) -> None:
    if retry == "not json object":
        retry = json.dumps([1])
    assert retry_of(SimpleNamespace(retry=retry)) == expected
    assert retry_of(SimpleNamespace()) is None  # a row of an older statement


def test_a_retry_step_makes_the_chat_wait() -> None:
    result = DrainResult()
    for step in (Step("ok"), Step("retry", countdown=4.5)):
        result.add(step)
    assert result == DrainResult(processed=1, retry_in=4.5)


def test_a_retry_carries_the_handlers_countdown_and_reason() -> None:
    retry = HandlerRetry(1001, 9, None, RetryLater("shop closed", -3), attempts=2)
    assert (retry.reason, retry.countdown, retry.attempts) == ("shop closed", 0.0, 2)


def test_a_dead_letter_keeps_the_handlers_own_traceback() -> None:
    def handler() -> None:
        raise KeyError("missing")

    try:
        handler()
    except KeyError as exc:
        error = exc
    failure = HandlerFailed(1001, 9, error)
    assert failure.reason == "handler error: KeyError('missing')"
    assert "in handler" in failure.traceback and "KeyError: 'missing'" in failure.traceback
    given = HandlerFailed(1001, 9, error, reason="handler asked to retry 6 times")
    assert given.reason == "handler asked to retry 6 times"
