"""Edits and deletes: what the user sees, Telegram's errors, pts, flood limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from telethon import Button, events
from telethon.errors import (
    FloodWaitError,
    MessageAuthorRequiredError,
    MessageIdInvalidError,
    MessageNotModifiedError,
)

from tests.support.simulator import World, collect
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.timeout(60)


def test_edit_and_delete_are_seen_by_the_user(world: World, run: Callable[..., Any]) -> None:
    # Given a bot that sent the user two messages, one with buttons (a burst of 10 allowed)
    world.sim.set_limits(private_chat_burst=10)

    async def scenario() -> tuple[list[int], int, int]:
        client = await world.bot_client()
        try:
            peer = await client.get_input_entity("ann_smith")
            first = await client.send_message(peer, "v1", buttons=Button.inline("Go", b"go"))
            second = await client.send_message(peer, "temp")
            # When it edits the first (new text and buttons) and deletes the second
            await client.edit_message(peer, first.id, "v2", buttons=Button.inline("Stop", b"s"))
            pts_before = (await client(_get_state())).pts
            [affected] = await client.delete_messages(peer, [second.id, 999], revoke=True)
            # Then editing to the same content is MESSAGE_NOT_MODIFIED, an unknown id
            # MESSAGE_ID_INVALID, and the deleted one is gone
            with pytest.raises(MessageNotModifiedError):
                await client.edit_message(peer, first.id, "v2", buttons=Button.inline("Stop", b"s"))
            with pytest.raises(MessageIdInvalidError):
                await client.edit_message(peer, second.id, "ghost")
            return [first.id, second.id], pts_before, affected.pts - affected.pts_count
        finally:
            await client.disconnect()

    (first_id, second_id), pts_before, pts_from = run(scenario())
    edited, deleted = world.sim.received(world.user["id"])
    assert (edited["message_id"], edited["text"], edited["deleted"]) == (first_id, "v2", False)
    assert edited["markup"]["inline"][0][0]["text"] == "Stop"
    assert edited["edit_date"] is not None
    assert (deleted["message_id"], deleted["deleted"]) == (second_id, True)
    # and the delete moved the bot's pts by exactly the one message it deleted
    assert pts_from == pts_before


def _get_state() -> Any:
    from telethon import functions

    return functions.updates.GetStateRequest()


def test_editing_a_users_message_and_edit_flood(world: World, run: Callable[..., Any]) -> None:
    # Given a private-chat limit of 2 with no refill to speak of, and a user's message
    world.sim.set_limits(private_chat_rate=0.01, private_chat_burst=2)
    [incoming] = world.sim.send(world.user["id"], world.bot["id"], "hello")

    async def scenario() -> int:
        client = await world.bot_client()
        try:
            peer = await client.get_input_entity("ann_smith")
            # When the bot edits the user's message, Then MESSAGE_AUTHOR_REQUIRED
            with pytest.raises(MessageAuthorRequiredError):
                await client.edit_message(peer, incoming["id"], "mine now")
            # When it sends once and edits twice, Then the second edit hits the chat's bucket
            sent = await client.send_message(peer, "a")
            await client.edit_message(peer, sent.id, "b")
            with pytest.raises(FloodWaitError) as flood:
                await client.edit_message(peer, sent.id, "c")
            return flood.value.seconds
        finally:
            await client.disconnect()

    assert run(scenario()) >= 1
    [got] = world.sim.received(world.user["id"])
    assert got["text"] == "b"


def test_user_edit_reaches_the_bot(world: World, run: Callable[..., Any]) -> None:
    # Given a listening bot that got a message from the user
    async def scenario() -> list[tuple[str, int]]:
        client = await world.bot_client()
        edits: list[tuple[str, int]] = []
        client.add_event_handler(
            collect(edits, lambda e: (e.raw_text, e.id)), events.MessageEdited()
        )
        await client.catch_up()
        try:
            [sent] = await asyncio.to_thread(
                world.sim.send, world.user["id"], world.bot["id"], "tpyo"
            )
            # When the user edits it
            await asyncio.to_thread(
                world.sim.edit, world.user["id"], world.bot["id"], sent["id"], "typo"
            )
            await wait_until_async(lambda: edits, 5, "the bot to see the edit")
            return [*edits, ("id", sent["id"])]
        finally:
            await client.disconnect()

    edits = run(scenario())
    # Then the bot's MessageEdited handler saw the new text on the same message
    assert edits == [("typo", edits[1][1]), ("id", edits[1][1])]
