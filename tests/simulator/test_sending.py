"""What bots send: delivery to users, idempotency, flood limits, media, edits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from telethon import events, functions
from telethon.errors import (
    BadRequestError,
    FloodWaitError,
    PeerIdInvalidError,
    UserIsBlockedError,
)
from telethon.tl import types

from tests.support.simulator import World, collect
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.timeout(60)


async def _known_user(world: World, client: Any) -> types.InputPeerUser:
    """The user as the bot's session knows it (resolved by username)."""
    entity = await client.get_input_entity("ann_smith")
    assert isinstance(entity, types.InputPeerUser)
    return entity


def test_sent_message_is_received_by_the_user(world: World, run: Callable[..., Any]) -> None:
    # Given a bot that received "/start" from a user
    async def scenario() -> tuple[int, int]:
        client = await world.bot_client()
        incoming: list[Any] = []
        client.add_event_handler(collect(incoming, lambda e: e), events.NewMessage(incoming=True))
        await client.catch_up()
        try:
            await asyncio.to_thread(world.sim.send, world.user["id"], world.bot["id"], "/start")
            await wait_until_async(lambda: len(incoming) == 1, 5, "the bot to get '/start'")
            # When the bot replies to it
            sent = await incoming[0].reply("welcome!")
            return sent.id, incoming[0].id
        finally:
            await client.disconnect()

    sent_id, start_id = run(scenario())
    # Then the user received the text, as a reply, with the bot's message id and a timestamp
    [got] = world.sim.received(world.user["id"])
    assert (got["bot_id"], got["message_id"], got["text"]) == (world.bot["id"], sent_id, "welcome!")
    assert got["reply_to"] == start_id
    assert got["date"] > 0


def test_repeated_random_id_is_delivered_once(world: World, run: Callable[..., Any]) -> None:
    # Given a bot that knows the user
    async def scenario() -> tuple[Any, Any]:
        client = await world.bot_client()
        try:
            peer = await _known_user(world, client)
            request = functions.messages.SendMessageRequest(peer, "only once", random_id=424242)
            # When the same request (same random_id) is sent twice, as after a crash
            first = await client(request)
            second = await client(request)
            return first, second
        finally:
            await client.disconnect()

    first, second = run(scenario())
    # Then both answers name the original message and the user got it once
    assert first.id == second.id
    assert [m["text"] for m in world.sim.received(world.user["id"])] == ["only once"]


def test_flood_limit_raises_flood_wait_with_the_buckets_seconds(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a private-chat limit of one message per 10 s with a burst of 2
    world.sim.set_limits(private_chat_rate=0.1, private_chat_burst=2)

    async def scenario() -> int:
        client = await world.bot_client()
        try:
            peer = await _known_user(world, client)
            await client.send_message(peer, "one")
            await client.send_message(peer, "two")
            # When the bot sends a third message at once
            with pytest.raises(FloodWaitError) as caught:
                await client.send_message(peer, "three")
            return caught.value.seconds
        finally:
            await client.disconnect()

    # Then Telethon raises FloodWaitError with the bucket's wait (10 s) and it is counted
    assert run(scenario()) == 10
    assert world.sim.stats()["flood_errors"] == 1
    assert len(world.sim.received(world.user["id"])) == 2


def test_forced_flood_wait_and_limits_switched_off(world: World, run: Callable[..., Any]) -> None:
    # Given limits switched off, but a forced 30 s FLOOD_WAIT on the bot
    world.sim.set_limits(enabled=False)
    world.sim.force_flood(world.bot["id"], 30)

    async def scenario() -> tuple[int, int]:
        client = await world.bot_client()
        try:
            peer = await _known_user(world, client)
            # When the bot sends
            with pytest.raises(FloodWaitError) as caught:
                await client.send_message(peer, "blocked")
            # and, once the forced wait is lifted, sends a burst of 20
            await asyncio.to_thread(world.sim.force_flood, world.bot["id"], 0)
            client._flood_waited_requests.clear()  # Telethon remembers the wait locally
            for i in range(20):
                await client.send_message(peer, f"burst {i}")
            return caught.value.seconds, len(world.sim.received(world.user["id"]))
        finally:
            await client.disconnect()

    # Then the forced wait is reported (what is left of it: logging in takes a moment) and
    # the burst goes through unthrottled
    seconds, received = run(scenario())
    assert 25 <= seconds <= 30
    assert received == 20


def test_wrong_access_hash_and_blocked_user_are_refused(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a bot that knows the user, and a user who blocked the bot
    async def scenario() -> None:
        client = await world.bot_client()
        try:
            peer = await _known_user(world, client)
            # When it sends with a wrong access hash, Then PEER_ID_INVALID
            with pytest.raises(PeerIdInvalidError):
                await client.send_message(types.InputPeerUser(peer.user_id, 12345), "x")
            # When it sends to a user who blocked it, Then USER_IS_BLOCKED
            await asyncio.to_thread(world.sim.block, world.user["id"], world.bot["id"])
            with pytest.raises(UserIsBlockedError):
                await client.send_message(peer, "y")
        finally:
            await client.disconnect()

    run(scenario())
    assert world.sim.received(world.user["id"]) == []


def test_bot_resends_a_photo_it_received(world: World, run: Callable[..., Any]) -> None:
    # Given a user who sent the bot a photo
    async def scenario() -> tuple[int, int]:
        client = await world.bot_client()
        photos: list[Any] = []
        client.add_event_handler(collect(photos, lambda e: e.message), events.NewMessage())
        await client.catch_up()
        try:
            await asyncio.to_thread(
                world.sim.send, world.user["id"], world.bot["id"], "my face", photo=True
            )
            await wait_until_async(lambda: len(photos) == 1, 5, "the bot to get the photo")
            photo = photos[0].photo
            assert isinstance(photo, types.Photo)
            # When the bot sends that photo back (InputMediaPhoto: id, hash, file reference)
            sent = await client.send_file(photos[0].sender_id, photo, caption="you")
            return photo.id, sent.photo.id
        finally:
            await client.disconnect()

    received_id, sent_id = run(scenario())
    # Then the user receives the same photo with the caption
    [got] = world.sim.received(world.user["id"])
    assert received_id == sent_id
    assert got["media"] == {"type": "photo", "id": received_id}
    assert got["text"] == "you"


def test_edit_typing_and_get_messages(world: World, run: Callable[..., Any]) -> None:
    # Given a bot that sent the user a message
    async def scenario() -> tuple[str, list[Any]]:
        client = await world.bot_client()
        try:
            peer = await _known_user(world, client)
            async with client.action(peer, "typing"):
                sent = await client.send_message(peer, "draft")
            # When it edits the message and fetches it back
            edited = await client.edit_message(peer, sent.id, "final")
            fetched = await client.get_messages(peer, ids=[sent.id, 9999])
            return edited.text, fetched
        finally:
            await client.disconnect()

    text, fetched = run(scenario())
    # Then the user's copy shows the edit, and getMessages returns it (and nothing for 9999)
    assert text == "final"
    assert fetched[0].text == "final"
    assert fetched[1] is None
    [got] = world.sim.received(world.user["id"])
    assert got["text"] == "final"
    assert got["edited_at"] is not None


def test_paid_broadcast_messages_above_the_free_rate_cost_stars(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a bot allowed 2 free messages at once, 0.3 Stars, and six users
    world.sim.set_limits(bot_rate=1.0, bot_burst=2)
    world.sim.set_stars(world.bot["id"], 0.3)
    names = [f"fan_{i}" for i in range(6)]
    for name in names:
        world.sim.create_user("Fan", username=name)

    async def scenario() -> tuple[list[str], str]:
        client = await world.bot_client()
        try:
            peers = [await client.get_input_entity(name) for name in names]
            outcomes = []
            # When it sends one paid broadcast message (allow_paid_floodskip) to each
            for i, peer in enumerate(peers[:6]):
                request = functions.messages.SendMessageRequest(
                    peer, f"news {i}", random_id=7000 + i, allow_paid_floodskip=True
                )
                try:
                    await client(request)
                    outcomes.append("sent")
                except BadRequestError as exc:
                    outcomes.append(exc.message)
            # and one without the flag
            try:
                await client.send_message(peers[0], "free")
                unflagged = "sent"
            except FloodWaitError:
                unflagged = "flood"
            return outcomes, unflagged
        finally:
            await client.disconnect()

    outcomes, unflagged = run(scenario())
    # Then two go free, three are paid for (0.1 Star each) and the sixth finds no Stars
    assert outcomes == ["sent"] * 5 + ["BALANCE_TOO_LOW"]
    bot = world.sim.bot(world.bot["id"])
    assert (bot["stars"], bot["paid_messages"]) == (0.0, 3)
    # and a message without the flag is held to the free rate
    assert unflagged == "flood"
