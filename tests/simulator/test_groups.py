"""Basic groups: users and bots in one chat, messages both ways, the per-group limit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from telethon import events
from telethon.errors import FloodWaitError, PeerIdInvalidError

from tests.support.simulator import World, collect
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.timeout(60)


def test_group_messages_reach_the_bot_and_its_replies_reach_every_member(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a group with two users and the bot
    other = world.sim.create_user("Ben")
    group = world.sim.create_group("Team", [world.user["id"], other["id"], world.bot["id"]])

    async def scenario() -> list[tuple[str, int, bool]]:
        client = await world.bot_client()
        seen: list[tuple[str, int, bool]] = []
        client.add_event_handler(
            collect(seen, lambda e: (e.raw_text, e.chat_id, e.is_group)), events.NewMessage()
        )
        await client.catch_up()
        try:
            # When a member posts, and the bot answers in the group
            await asyncio.to_thread(world.sim.send_group, world.user["id"], group["id"], "hi all")
            await wait_until_async(lambda: len(seen) == 1, 5, "the group message")
            await client.send_message(-group["id"], "hello team")
            return seen
        finally:
            await client.disconnect()

    # Then the bot saw a group message, and both members received the answer
    assert run(scenario()) == [("hi all", -group["id"], True)]
    for member in (world.user["id"], other["id"]):
        [got] = world.sim.received(member)
        assert (got["text"], got["chat_id"]) == ("hello team", group["id"])


def test_group_limit_and_outsiders(world: World, run: Callable[..., Any]) -> None:
    # Given a group limit of 2 messages per minute, and a group the bot is not in
    world.sim.set_limits(group_rate=2 / 60, group_burst=2)
    mine = world.sim.create_group("Mine", [world.user["id"], world.bot["id"]])
    theirs = world.sim.create_group("Theirs", [world.user["id"]])

    async def scenario() -> int:
        client = await world.bot_client()
        try:
            # When it writes to the other group, Then it is refused
            with pytest.raises(PeerIdInvalidError):
                await client.send_message(-theirs["id"], "intruder")
            # When it sends three messages to its group
            await client.send_message(-mine["id"], "1")
            await client.send_message(-mine["id"], "2")
            with pytest.raises(FloodWaitError) as flood:
                await client.send_message(-mine["id"], "3")
            return flood.value.seconds
        finally:
            await client.disconnect()

    # Then the third waits for the group bucket (30 s)
    assert run(scenario()) == 30
    assert [m["text"] for m in world.sim.received(world.user["id"])] == ["1", "2"]
