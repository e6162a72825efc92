"""Waiting for something to happen: poll a condition until a deadline, then fail saying
what never happened. Tests wait on conditions, never on fixed sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from tgfleet.dev.processes import Child

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    poll: float = 0.1,
    detail: Callable[[], object] | None = None,
) -> T:
    """Call ``predicate`` every ``poll`` seconds until it returns something truthy, and
    return that. After ``timeout`` seconds fail with "timed out after ...s waiting for
    <what>", followed by ``detail()`` (a log tail, the rows seen) when given.

    ``predicate`` may raise AssertionError itself to fail at once (a child that died).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_timed_out(timeout, what, detail))
        time.sleep(poll)


async def wait_until_async(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    poll: float = 0.02,
    detail: Callable[[], object] | None = None,
) -> T:
    """``wait_until`` for coroutines: polls without blocking the running event loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(_timed_out(timeout, what, detail))
        await asyncio.sleep(poll)


def _timed_out(timeout: float, what: str, detail: Callable[[], object] | None) -> str:
    message = f"timed out after {timeout:g}s waiting for {what}"
    return f"{message}; {detail()}" if detail is not None else message


def log_tail(child: Child, chars: int = 3000) -> str:
    """The end of a child process's log."""
    return child.log_path.read_text(errors="replace")[-chars:]


def wait_for_log(child: Child, needle: str, timeout: float) -> None:
    """Wait until ``needle`` appears in the child's log; fail with the log's tail if it
    does not, at once if the child exits first."""

    def logged() -> bool:
        alive = child.alive  # (read before the log: a child may log, then exit)
        if needle in child.log_path.read_text(errors="replace"):
            return True
        if not alive:
            raise AssertionError(
                f"{child.name} exited without logging {needle!r}; log tail:\n{log_tail(child)}"
            )
        return False

    wait_until(
        logged,
        timeout,
        f"{child.name} to log {needle!r}",
        detail=lambda: f"log tail:\n{log_tail(child)}",
    )
