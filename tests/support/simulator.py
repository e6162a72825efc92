"""Fixtures for the simulator's tests (imported by ``tests/simulator/conftest.py``): a
simulator in a background thread, a bot and a user in it, and a factory of real
(unmodified) Telethon clients connected to it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from telethon import TelegramClient

from tgfleet.simulator import SimulatorThread, new_client

T = TypeVar("T")


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread() as simulator:
        yield simulator


@dataclass
class World:
    sim: SimulatorThread
    bot: dict[str, Any]
    user: dict[str, Any]

    def client(self, **kwargs: Any) -> TelegramClient:
        """A Telethon client for this simulator (create it inside the running loop)."""
        kwargs.setdefault("flood_sleep_threshold", 0)
        kwargs.setdefault("request_retries", 1)
        return new_client(self.sim.host, self.sim.port, self.sim.public_pem, **kwargs)

    async def bot_client(self, **kwargs: Any) -> TelegramClient:
        client = self.client(**kwargs)
        await client.start(bot_token=self.bot["token"])
        return client


@pytest.fixture
def world(sim: SimulatorThread) -> World:
    bot = sim.create_bot(username="test_bot")
    user = sim.create_user("Ann", "Smith", username="ann_smith")
    return World(sim, bot, user)


@pytest.fixture
def run() -> Callable[[Coroutine[Any, Any, T]], T]:
    """Run a coroutine to completion on a fresh event loop (tests stay synchronous)."""

    def runner(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run(coro)

    return runner


def collect(
    into: list[Any], pick: Callable[[Any], Any] = lambda event: event.raw_text
) -> Callable[[Any], Coroutine[Any, Any, None]]:
    """An (async, as Telethon requires) event handler appending ``pick(event)`` to ``into``."""

    async def handler(event: Any) -> None:
        into.append(pick(event))

    return handler


def getting_difference(client: TelegramClient) -> bool:
    """Whether Telethon is fetching a difference (updates.getDifference) right now, during
    which it drops pushes. (Read from its message box: no public API tells.)"""
    return bool(client._message_box.getting_diff_for)
