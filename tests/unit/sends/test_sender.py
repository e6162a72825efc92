"""The sender's pure decisions: which Telegram errors retrying cannot fix, where a refused
peer's hash is found, and the backoff between counted failures.

How each error becomes a row state (with PostgreSQL and Redis) is in tests/tasks/."""

from __future__ import annotations

import random
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from telethon import errors
from telethon.tl import functions, types

from tgfleet.platform.settings import Settings
from tgfleet.sends.loop import SenderUnavailable
from tgfleet.sends.pacing import Stage
from tgfleet.sends.sender import PERMANENT_ERRORS, Outcome, Sender, _peer_of

PERMANENT: dict[str, Callable[[], Exception]] = {
    "chat-write-forbidden": lambda: errors.ChatWriteForbiddenError(request=None),
    "input-user-deactivated": lambda: errors.InputUserDeactivatedError(request=None),
    "message-empty": lambda: errors.MessageEmptyError(request=None),
    "message-too-long": lambda: errors.MessageTooLongError(request=None),
    "user-is-bot": lambda: errors.UserIsBotError(request=None),
    "any-other-bad-request": lambda: errors.ChatAdminRequiredError(request=None),
    "user-is-blocked": lambda: errors.UserIsBlockedError(request=None),
}
RETRYABLE: dict[str, Callable[[], Exception]] = {
    "flood-wait": lambda: errors.FloodWaitError(request=None, capture=30),
    "slow-mode": lambda: errors.SlowModeWaitError(request=None, capture=10),
    "server-error": lambda: errors.RpcCallFailError(request=None),
    "internal": lambda: errors.ServerError(request=None, message="INTERNAL"),
    "connection": lambda: ConnectionError("reset"),
    "timeout": lambda: TimeoutError(),
    "sender-unavailable": lambda: SenderUnavailable("cannot connect"),
}


@pytest.mark.parametrize("make", PERMANENT.values(), ids=PERMANENT.keys())
def test_errors_retrying_cannot_fix_are_permanent(make: Callable[[], Exception]) -> None:
    assert isinstance(make(), PERMANENT_ERRORS)


@pytest.mark.parametrize("make", RETRYABLE.values(), ids=RETRYABLE.keys())
def test_waits_and_weather_are_not_permanent(make: Callable[[], Exception]) -> None:
    assert not isinstance(make(), PERMANENT_ERRORS)


def test_a_flood_wait_carries_its_seconds() -> None:
    # The sender pauses the bot for exactly what Telegram asked
    assert errors.FloodWaitError(request=None, capture=42).seconds == 42


def test_the_refused_peer_is_read_from_the_failed_request() -> None:
    # Given PEER_ID_INVALID for a send to a peer with a stale hash
    peer = types.InputPeerUser(1001, 777)
    request = functions.messages.SendMessageRequest(peer=peer, message="hi", random_id=1)
    exc = errors.PeerIdInvalidError(request=request)
    # Then the sender finds the hash to distrust on the next attempt
    assert _peer_of(exc) is peer
    assert _peer_of(errors.PeerIdInvalidError(request=None)) is None


def test_an_outcome_defaults_to_an_immediate_first_stage() -> None:
    outcome = Outcome("retry", "rate limit")
    assert (outcome.countdown, outcome.stage, outcome.extra) == (0.0, Stage.NONE, {})


@pytest.mark.parametrize(
    ("attempts", "jitter", "countdown"),
    [
        (1, "high", 2.0),  # the base
        (1, "low", 1.0),  # jitter keeps at least half
        (3, "high", 8.0),
        (10, "high", 600.0),  # capped
        (10, "low", 300.0),
        (0, "high", 2.0),  # never below the base
    ],
)
def test_counted_failures_back_off_exponentially(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    attempts: int,
    jitter: str,
    countdown: float,
) -> None:
    # Given the default base (2 s) and cap (600 s), and jitter at one end of its range
    monkeypatch.setattr(random, "uniform", lambda low, high: high if jitter == "high" else low)
    # The formula only reads the Sender's settings; building a Sender would start its
    # event loop thread and clients, so it is called with the settings alone.
    owner = SimpleNamespace(settings=make_settings())
    assert Sender.backoff(owner, attempts) == countdown  # type: ignore[arg-type]
