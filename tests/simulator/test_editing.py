"""Edits and deletes: what the user sees, Telegram's errors, pts, flood limits; edits that
replace a message's photo or document."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from telethon import Button, events, functions
from telethon.errors import (
    FileReferenceExpiredError,
    FloodWaitError,
    MediaCaptionTooLongError,
    MediaEmptyError,
    MediaNewInvalidError,
    MediaPrevInvalidError,
    MessageAuthorRequiredError,
    MessageIdInvalidError,
    MessageNotModifiedError,
)
from telethon.tl import types

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


def test_a_bot_edits_a_photo_message_into_another_photo(
    world: World, run: Callable[..., Any]
) -> None:
    # Given two photos the user sent the bot
    user, bot = world.user["id"], world.bot["id"]
    first, second = (world.sim.send(user, bot, "", photo=True)[0] for _ in range(2))

    async def scenario() -> tuple[int, int, int, Any, Any]:
        client = await world.bot_client()
        try:
            peer = await client.get_input_entity("ann_smith")
            mine, theirs = await client.get_messages(peer, ids=[first["id"], second["id"]])
            old, new = mine.photo, theirs.photo
            # And a profile card the bot sent with the first photo and a button
            next_button = Button.inline("Next", b"next")
            card = await client.send_file(peer, old, caption="Ann, 30", buttons=next_button)

            def edit(photo: types.InputPhoto) -> Any:
                media = types.InputMediaPhoto(photo)
                return client(functions.messages.EditMessageRequest(peer, card.id, media=media))

            # When it edits the card's photo as sendMedia would refuse it: a stale file
            # reference, a wrong access hash, a photo that does not exist
            with pytest.raises(FileReferenceExpiredError):
                await edit(types.InputPhoto(new.id, new.access_hash, b"stale"))
            with pytest.raises(MediaEmptyError):
                await edit(types.InputPhoto(new.id, new.access_hash + 1, new.file_reference))
            with pytest.raises(MediaEmptyError):
                await edit(types.InputPhoto(12345, new.access_hash, new.file_reference))
            # Then Telegram's errors; and with the second photo and a new caption it is edited
            edited = await client.edit_message(
                peer, card.id, "Bob, 31", file=new, buttons=next_button
            )
            # And the same edit again changes nothing
            with pytest.raises(MessageNotModifiedError):
                await client.edit_message(peer, card.id, "Bob, 31", file=new, buttons=next_button)
            [read] = await client.get_messages(peer, ids=[card.id])
            return card.id, old.id, new.id, edited, read
        finally:
            await client.disconnect()

    card_id, old_id, new_id, edited, read = run(scenario())
    assert old_id != new_id
    # And the user's copy shows the new photo, caption and button, marked edited
    [got] = world.sim.received(user)
    assert (got["message_id"], got["media"], got["text"]) == (
        card_id,
        {"type": "photo", "id": new_id},
        "Bob, 31",
    )
    assert got["edit_date"] is not None
    assert got["markup"]["inline"][0][0]["text"] == "Next"
    # And the bot reads it back so, from the edit's answer and from getMessages
    assert (edited.photo.id, read.photo.id, read.message) == (new_id, new_id, "Bob, 31")


def test_a_text_message_gets_a_photo_by_edit_but_voice_notes_are_not_edited(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a photo and a voice note the user sent the bot (a burst of 10 allowed)
    world.sim.set_limits(private_chat_burst=10)
    user, bot = world.user["id"], world.bot["id"]
    [photo] = world.sim.send(user, bot, "", photo=True)
    [voice] = world.sim.send(user, bot, "", media={"type": "voice", "duration": 2})

    async def scenario() -> int:
        client = await world.bot_client()
        try:
            peer = await client.get_input_entity("ann_smith")
            with_photo, with_voice = await client.get_messages(peer, ids=[photo["id"], voice["id"]])
            # When the bot edits a text message into the photo, Then it has the photo
            text = await client.send_message(peer, "Loading the next profile...")
            await client.edit_message(peer, text.id, "Ann, 30", file=with_photo.photo)
            # When a text too long for a caption would become one: MEDIA_CAPTION_TOO_LONG
            long = await client.send_message(peer, "x" * 1100)
            with pytest.raises(MediaCaptionTooLongError):
                await client.edit_message(peer, long.id, file=with_photo.photo)
            # When it edits a voice note it sent, or edits a message into a voice note
            sent_voice = await client.send_file(peer, with_voice.document)
            with pytest.raises(MediaPrevInvalidError):
                await client.edit_message(peer, sent_voice.id, file=with_photo.photo)
            with pytest.raises(MediaNewInvalidError):
                await client.edit_message(peer, long.id, "short", file=with_voice.document)
            return int(text.id)
        finally:
            await client.disconnect()

    text_id = run(scenario())
    # Then only the text message changed: the user sees it as the photo, captioned
    got = {m["message_id"]: m for m in world.sim.received(user)}
    assert got[text_id]["media"] == {"type": "photo", "id": photo["photo_id"]}
    assert got[text_id]["text"] == "Ann, 30"
    assert [m["edit_date"] is not None for m in got.values()] == [True, False, False]
