"""Which Telegram errors mean a stored session is dead (the listener drops it and logs in
again) and which pass (network trouble, flood waits: the session stays)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from telethon import errors
from telethon.errors.common import AuthKeyNotFound

from tgfleet.platform.telegram import session_is_invalid

INVALID: dict[str, Callable[[], BaseException]] = {
    "auth-key-unregistered": lambda: errors.AuthKeyUnregisteredError(request=None),
    "auth-key-duplicated": lambda: errors.AuthKeyDuplicatedError(request=None),
    "session-revoked": lambda: errors.SessionRevokedError(request=None),
    "auth-key-not-found": AuthKeyNotFound,
}
VALID: dict[str, Callable[[], BaseException]] = {
    "connection": lambda: ConnectionError("connection reset by peer"),
    "timeout": lambda: TimeoutError("no answer"),
    "flood-wait": lambda: errors.FloodWaitError(request=None, capture=30),
    "server-error": lambda: errors.RpcCallFailError(request=None),
    "bad-request": lambda: errors.PeerIdInvalidError(request=None),
}


@pytest.mark.parametrize("make", INVALID.values(), ids=INVALID.keys())
def test_a_dead_session_is_recognised(make: Callable[[], BaseException]) -> None:
    assert session_is_invalid(make())


@pytest.mark.parametrize("make", VALID.values(), ids=VALID.keys())
def test_weather_keeps_the_session(make: Callable[[], BaseException]) -> None:
    assert not session_is_invalid(make())


@pytest.mark.parametrize("make", INVALID.values(), ids=INVALID.keys())
def test_a_dead_session_is_recognised_behind_a_wrapper(make: Callable[[], BaseException]) -> None:
    # Given the Telegram error raised as the cause of tgfleet's own error, itself the
    # context of another
    try:
        try:
            raise RuntimeError("could not start the client") from make()
        except RuntimeError:
            raise ValueError("listener failed")  # noqa: B904 (implicit __context__ on purpose)
    except ValueError as exc:
        wrapped = exc
    # When it is classified, Then the chain is followed
    assert session_is_invalid(wrapped)


@pytest.mark.parametrize("make", VALID.values(), ids=VALID.keys())
def test_a_wrapped_network_error_keeps_the_session(make: Callable[[], BaseException]) -> None:
    outer = RuntimeError("could not connect")
    outer.__cause__ = make()
    assert not session_is_invalid(outer)


def test_a_cyclic_chain_ends() -> None:
    # Given two errors that are each other's context (possible with re-raised exceptions)
    first, second = ConnectionError("a"), TimeoutError("b")
    first.__context__, second.__context__ = second, first
    # When it is classified, Then it answers instead of looping
    assert not session_is_invalid(first)
