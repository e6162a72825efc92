"""Injected faults, seen from a real Telethon client: stalls, restarts, refused connections."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from telethon import events, functions
from telethon.errors import FloodWaitError

from tests.support.simulator import World, collect
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.timeout(60)


def test_stall_delays_replies_without_losing_them(world: World, run: Callable[..., Any]) -> None:
    # Given a logged-in bot
    async def scenario() -> tuple[float, int]:
        client = await world.bot_client()
        try:
            # When replies are stalled for 1.5 s and the bot asks for itself
            await asyncio.to_thread(world.sim.stall, 1.5)
            start = time.monotonic()
            me = await client.get_me()
            return time.monotonic() - start, me.id
        finally:
            await client.disconnect()

    # Then the answer arrives, but only after the stall
    waited, me_id = run(scenario())
    assert me_id == world.bot["id"]
    assert 1.3 <= waited < 10


def test_restart_keeps_sessions_authorised(world: World, run: Callable[..., Any]) -> None:
    # Given a listening bot
    async def scenario() -> list[str]:
        client = await world.bot_client(connection_retries=10, retry_delay=0.2)
        seen: list[str] = []
        client.add_event_handler(collect(seen), events.NewMessage())
        await client.catch_up()
        try:
            # When the simulator restarts with half a second of downtime
            await asyncio.to_thread(world.sim.restart, 0.5)
            await client.get_me()
            await asyncio.to_thread(world.sim.send, world.user["id"], world.bot["id"], "back")
            await wait_until_async(lambda: seen == ["back"], 10, "the bot to hear 'back'")
            return seen
        finally:
            await client.disconnect()

    # Then the client reconnects with its auth key, still logged in, and hears the user
    assert run(scenario()) == ["back"]
    assert world.sim.stats()["counters"]["restarts"] == 1


def test_refused_connections_fail_until_the_window_ends(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a simulator refusing new connections for 1 s
    world.sim.refuse_connections(1.0)

    async def scenario() -> tuple[bool, int]:
        refused = world.client(connection_retries=0)
        try:
            # When a client connects during the window
            await refused.connect()
            failed = False
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            failed = True
        finally:
            await refused.disconnect()
        await wait_until_async(
            lambda: not world.sim.call(lambda: world.sim.sim.refusing), 5, "the window to end"
        )
        # and another after it
        client = await world.bot_client()
        try:
            return failed, (await client.get_me()).id
        finally:
            await client.disconnect()

    # Then the first fails and the second logs in
    failed, me_id = run(scenario())
    assert failed
    assert me_id == world.bot["id"]


def test_a_forced_flood_on_one_method_answers_flood_wait_to_that_method_only(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a bot whose contacts.resolveUsername calls are flood-limited for 30 s
    world.sim.flood_method(world.bot["id"], "contacts.resolveUsername", 30)

    async def scenario() -> tuple[int, Any, int, int, int]:
        client = await world.bot_client(receive_updates=False)
        try:
            # When it resolves a username, and does something else
            with pytest.raises(FloodWaitError) as caught:
                await client(functions.contacts.ResolveUsernameRequest("ann_smith"))
            me = await client.get_me()
            # and, once the flood is lifted, resolves again; then every method is flooded
            await asyncio.to_thread(
                world.sim.flood_method, world.bot["id"], "contacts.resolveUsername", 0
            )
            resolved = await client(functions.contacts.ResolveUsernameRequest("ann_smith"))
            await asyncio.to_thread(world.sim.flood_method, world.bot["id"], "*", 5)
            with pytest.raises(FloodWaitError) as everything:
                await client.get_me()
            return (
                caught.value.seconds,
                caught.value.request,
                me.id,
                resolved.users[0].id,
                everything.value.seconds,
            )
        finally:
            await client.disconnect()

    seconds, request, me_id, resolved_id, seconds_all = run(scenario())
    # Then only the flooded method failed, with what is left of the 30 s (logging in takes
    # a moment) answered to the wrapped call
    assert 25 <= seconds <= 30
    assert isinstance(request, functions.InvokeWithoutUpdatesRequest)
    assert me_id == world.bot["id"]
    # and lifting it works; "*" floods every method
    assert resolved_id == world.user["id"]
    assert 1 <= seconds_all <= 5
