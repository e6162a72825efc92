"""Pushed updates, catching up with getDifference, gaps and reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from telethon import events

from tests.support.simulator import World, collect, getting_difference
from tests.support.waiting import wait_until_async
from tgfleet.simulator import SimulatorThread

pytestmark = pytest.mark.timeout(60)


async def _user_says(world: World, text: str, count: int = 1) -> None:
    await asyncio.to_thread(world.sim.send, world.user["id"], world.bot["id"], text, count=count)


def test_new_message_handler_fires_for_a_users_message(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a listening bot with a NewMessage handler
    async def scenario() -> list[tuple[str, int, bool, list[str]]]:
        client = await world.bot_client()
        seen: list[tuple[str, int, bool, list[str]]] = []

        async def on_message(event: events.NewMessage.Event) -> None:
            sender = await event.get_sender()
            commands = [type(entity).__name__ for entity in event.message.entities or []]
            seen.append((event.raw_text, event.sender_id, bool(sender.access_hash), commands))

        client.add_event_handler(on_message, events.NewMessage(incoming=True))
        await client.catch_up()
        try:
            # When the user sends "/start"
            await _user_says(world, "/start")
            await wait_until_async(lambda: len(seen) == 1, 5, "the handler to fire")
            return seen
        finally:
            await client.disconnect()

    # Then the handler fired once, with the sender known (access hash cached) and the
    # command marked with a bot_command entity
    assert run(scenario()) == [("/start", world.user["id"], True, ["MessageEntityBotCommand"])]


def test_offline_client_catches_up_every_missed_message(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a listener that went offline after seeing one message
    async def scenario() -> list[str]:
        client = await world.bot_client()
        seen: list[str] = []
        client.add_event_handler(collect(seen), events.NewMessage())
        await client.catch_up()
        await _user_says(world, "before")
        await wait_until_async(lambda: seen == ["before"], 5, "'before'")
        await client.disconnect()
        # When the user sends five messages while it is offline and it reconnects
        await _user_says(world, "missed {i}", count=5)
        await client.connect()
        await client.catch_up()
        try:
            await wait_until_async(lambda: len(seen) == 6, 5, "the 5 missed messages")
            await asyncio.sleep(0.2)  # (a quiet spell: a duplicate would arrive in it)
            return seen
        finally:
            await client.disconnect()

    # Then getDifference delivered every missed message, once, in order
    assert run(scenario()) == ["before"] + [f"missed {i}" for i in range(5)]


def test_lost_pushes_are_recovered_through_the_gap(world: World, run: Callable[..., Any]) -> None:
    # Given a listener, and a simulator that loses the bot's next two pushes
    async def scenario() -> tuple[list[str], int]:
        client = await world.bot_client()
        seen: list[str] = []
        client.add_event_handler(collect(seen), events.NewMessage())
        await client.catch_up()
        try:
            await asyncio.to_thread(world.sim.lose_pushes, world.bot["id"], 2)
            # When three messages arrive (only the third is pushed)
            await _user_says(world, "m{i}", count=3)
            await wait_until_async(lambda: len(seen) == 3, 5, "the 3 messages")
            stats = await asyncio.to_thread(world.sim.stats)
            return seen, stats["counters"].get("differences", 0)
        finally:
            await client.disconnect()

    seen, differences = run(scenario())
    # Then the client saw the pts gap and fetched the two lost messages with getDifference
    assert sorted(seen) == ["m0", "m1", "m2"]
    assert differences >= 2


def test_client_reconnects_after_every_connection_is_dropped(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a listener that is logged in
    def connections_made() -> int:
        return int(world.sim.stats()["counters"].get("connections_total", 0))

    async def scenario() -> tuple[int, list[str], int]:
        client = await world.bot_client(connection_retries=5, retry_delay=0.1)
        seen: list[str] = []
        client.add_event_handler(collect(seen), events.NewMessage())
        await client.catch_up()
        try:
            # When the simulator drops every connection
            connections = await asyncio.to_thread(connections_made)
            dropped = await asyncio.to_thread(world.sim.drop_connections)
            await wait_until_async(
                lambda: connections_made() > connections, 10, "the client to connect again"
            )
            # Then the client reconnects with its auth key, still authorised, and gets pushes
            me = await client.get_me()
            await _user_says(world, "after reconnect")
            await wait_until_async(lambda: seen == ["after reconnect"], 10, "the push")
            return dropped, seen, me.id
        finally:
            await client.disconnect()

    dropped, seen, me_id = run(scenario())
    assert dropped >= 1
    assert me_id == world.bot["id"]
    assert seen == ["after reconnect"]


def test_history_beyond_the_limit_answers_difference_too_long(run: Callable[..., Any]) -> None:
    # Given a simulator keeping only 3 history entries per bot
    with SimulatorThread(history_limit=3) as sim:
        w = World(sim, sim.create_bot(), sim.create_user("Bo"))

        async def scenario() -> list[str]:
            client = await w.bot_client()
            seen: list[str] = []
            client.add_event_handler(collect(seen), events.NewMessage())
            await client.catch_up()
            await client.disconnect()
            # When ten messages arrive while the client is offline
            await _user_says(w, "old {i}", count=10)
            await client.connect()
            await client.catch_up()
            # (a push racing the client's own getDifference is dropped by Telethon, as with
            # Telegram: wait until the client has taken the answer in before the next message)
            await wait_until_async(
                lambda: (
                    sim.call(lambda: sim.sim.stats["differences_too_long"]) > 0
                    and not getting_difference(client)
                ),
                5,
                "the client to take in differenceTooLong",
            )
            await _user_says(w, "fresh")
            try:
                await wait_until_async(lambda: "fresh" in seen, 5, "'fresh'")
                return seen
            finally:
                await client.disconnect()

        # Then the client is told the difference is too long and carries on from now
        seen = run(scenario())
    assert seen[-1] == "fresh"
    assert "old 0" not in seen


def test_a_burst_of_pushes_arrives_complete_and_in_order(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a listening bot
    def differences() -> int:
        return int(world.sim.stats()["counters"].get("differences", 0))

    async def scenario() -> tuple[list[str], int]:
        client = await world.bot_client()
        seen: list[str] = []
        client.add_event_handler(collect(seen), events.NewMessage())
        caught_up = await asyncio.to_thread(differences)
        await client.catch_up()
        await wait_until_async(
            lambda: differences() > caught_up and not getting_difference(client),
            5,
            "the catch-up's difference",
        )
        before = await asyncio.to_thread(differences)
        try:
            # When 300 messages arrive at once (batched into few Updates on the wire)
            await _user_says(world, "n{i}", count=300)
            await wait_until_async(lambda: len(seen) >= 300, 20, "the 300 messages")
            await asyncio.sleep(0.2)  # (a quiet spell: a duplicate or a getDifference comes in it)
            return seen, await asyncio.to_thread(differences) - before
        finally:
            await client.disconnect()

    # Then every one was delivered exactly once, in order, without a getDifference
    seen, extra_differences = run(scenario())
    assert seen == [f"n{i}" for i in range(300)]
    assert extra_differences == 0
