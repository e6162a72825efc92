"""Basic groups: users and bots in one chat, messages both ways, the per-group limit,
members joining and leaving."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from telethon import events
from telethon.errors import FloodWaitError, PeerIdInvalidError
from telethon.tl import types

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


def test_adding_and_removing_the_bot_gives_service_messages_and_participant_updates(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a group of one user, and a listening bot outside it
    group = world.sim.create_group("Club", [world.user["id"]])

    async def scenario() -> tuple[list[Any], list[Any]]:
        client = await world.bot_client()
        actions: list[Any] = []
        participants: list[Any] = []
        client.add_event_handler(
            collect(actions, lambda e: (e.user_added, e.user_kicked, e.user_id, e.chat_id)),
            events.ChatAction(),
        )
        client.add_event_handler(
            collect(participants, lambda u: (u.user_id, u.new_participant is not None, u.qts)),
            events.Raw(types.UpdateChatParticipant),
        )
        await client.catch_up()
        try:
            # When the user adds the bot, then another user, then removes the bot
            other = await asyncio.to_thread(world.sim.create_user, "Cy")
            await asyncio.to_thread(
                world.sim.add_member, group["id"], world.bot["id"], world.user["id"]
            )
            await asyncio.to_thread(
                world.sim.add_member, group["id"], other["id"], world.user["id"]
            )
            await asyncio.to_thread(
                world.sim.remove_member, group["id"], world.bot["id"], world.user["id"]
            )
            await wait_until_async(lambda: len(actions) == 3, 5, "three service messages")
            await wait_until_async(lambda: len(participants) == 2, 5, "two participant updates")
            return actions, [*participants, other["id"]]
        finally:
            await client.disconnect()

    actions, participants = run(scenario())
    bot_id, chat = world.bot["id"], -group["id"]
    # Then the bot saw each change as a ChatAction (MessageService, pts +1) ...
    assert actions == [
        (True, False, bot_id, chat),
        (True, False, participants[2], chat),
        (False, True, bot_id, chat),
    ]
    # ... and its own joining and leaving as UpdateChatParticipant on qts 1 and 2
    assert participants[:2] == [(bot_id, True, 1), (bot_id, False, 2)]
    # and the bot is no longer a member
    assert world.bot["id"] not in world.sim.groups()[0]["member_ids"]
