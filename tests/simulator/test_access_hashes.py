"""Access hashes that go stale: a rehashed user answers PEER_ID_INVALID to the old hash, and
the new one reaches the bot as Telegram hands it out (the next update, resolveUsername)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from telethon import events, functions
from telethon.errors import PeerIdInvalidError
from telethon.tl import types

from tests.support.simulator import World
from tests.support.waiting import wait_until_async
from tgfleet.simulator import SimulatorThread, new_client

pytestmark = pytest.mark.timeout(60)


async def _user_says(world: World, text: str) -> None:
    await asyncio.to_thread(world.sim.send, world.user["id"], world.bot["id"], text)


async def _resolved_hash(client: Any, username: str) -> int:
    resolved = await client(functions.contacts.ResolveUsernameRequest(username))
    return int(resolved.users[0].access_hash)


def test_stale_hash_fails_without_updates_and_the_next_update_brings_the_new_one(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a listener that learned the user's hash from a message, and a sender session
    # that does not receive updates (Telethon wraps its calls in InvokeWithoutUpdates)
    user_id = world.user["id"]

    async def scenario() -> tuple[list[tuple[str, int]], Any, list[str]]:
        listener = await world.bot_client()
        sender = await world.bot_client(receive_updates=False)
        seen: list[tuple[str, int]] = []

        async def on_message(event: events.NewMessage.Event) -> None:
            peer = await event.get_input_sender()
            seen.append((event.raw_text, peer.access_hash))

        listener.add_event_handler(on_message, events.NewMessage(incoming=True))
        await listener.catch_up()
        try:
            await _user_says(world, "hello")
            await wait_until_async(lambda: len(seen) == 1, 5, "the first message")
            # When the user's access hash changes and the sender presents the old one
            await asyncio.to_thread(world.sim.rehash_user, user_id)
            with pytest.raises(PeerIdInvalidError) as caught:
                await sender.send_message(types.InputPeerUser(user_id, seen[0][1]), "stale")
            # and the user writes again; the sender replies with the hash that came with it
            await _user_says(world, "again")
            await wait_until_async(lambda: len(seen) == 2, 5, "the second message")
            await sender.send_message(types.InputPeerUser(user_id, seen[1][1]), "fresh")
            received = await asyncio.to_thread(world.sim.wait_received, user_id, 1)
            return seen, caught.value, [m["text"] for m in received]
        finally:
            await listener.disconnect()
            await sender.disconnect()

    seen, error, received = run(scenario())
    # Then the old hash got PEER_ID_INVALID as the answer to the wrapped call itself
    assert isinstance(error.request, functions.InvokeWithoutUpdatesRequest)
    assert isinstance(error.request.query, functions.messages.SendMessageRequest)
    # and the user's next update carried a new hash, which works
    assert seen[0][1] != seen[1][1]
    assert received == ["fresh"]


def test_resolve_username_gives_the_new_hash_and_lookups_by_the_old_one_fail(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a bot that resolved the user's username
    user_id = world.user["id"]

    async def scenario() -> tuple[int, int, list[str], list[int]]:
        client = await world.bot_client(receive_updates=False)
        try:
            old = await _resolved_hash(client, "ann_smith")
            # When the user's hash changes
            await asyncio.to_thread(world.sim.rehash_user, user_id)
            # Then every lookup by the old hash fails with PEER_ID_INVALID
            failures = []
            for request in (
                functions.users.GetUsersRequest([types.InputUser(user_id, old)]),
                functions.users.GetFullUserRequest(types.InputUser(user_id, old)),
                functions.messages.SetTypingRequest(
                    types.InputPeerUser(user_id, old), types.SendMessageTypingAction()
                ),
            ):
                with pytest.raises(PeerIdInvalidError):
                    await client(request)
                failures.append(type(request).__name__)
            # and resolving the username again gives the new one, which works
            new = await _resolved_hash(client, "ann_smith")
            users = await client(functions.users.GetUsersRequest([types.InputUser(user_id, new)]))
            return old, new, failures, [u.id for u in users]
        finally:
            await client.disconnect()

    old, new, failures, found = run(scenario())
    assert failures == ["GetUsersRequest", "GetFullUserRequest", "SetTypingRequest"]
    assert new != old
    assert found == [user_id]


def test_a_rehash_for_one_bot_leaves_other_bots_hashes_alone(
    world: World, run: Callable[..., Any]
) -> None:
    # Given two bots that both resolved the user
    other = world.sim.create_bot(username="other_bot")
    user_id = world.user["id"]

    async def scenario() -> tuple[list[int], list[int], int]:
        first = await world.bot_client(receive_updates=False)
        second = world.client(receive_updates=False)
        await second.start(bot_token=other["token"])
        try:
            hashes = [await _resolved_hash(c, "ann_smith") for c in (first, second)]
            # When the user's hash changes only as the first bot sees it
            await asyncio.to_thread(world.sim.rehash_user, user_id, world.bot["id"])
            with pytest.raises(PeerIdInvalidError):
                await first.send_message(types.InputPeerUser(user_id, hashes[0]), "stale")
            # Then the second bot's hash still works, and only the first bot's changed
            await second.send_message(types.InputPeerUser(user_id, hashes[1]), "still fine")
            after = [await _resolved_hash(c, "ann_smith") for c in (first, second)]
            received = await asyncio.to_thread(world.sim.wait_received, user_id, 1)
            return hashes, after, received[0]["bot_id"]
        finally:
            await first.disconnect()
            await second.disconnect()

    before, after, sender = run(scenario())
    assert after[0] != before[0]
    assert after[1] == before[1]
    assert sender == other["id"]


def test_a_bot_offline_during_the_rehash_gets_the_new_hash_from_get_difference(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a listener that saw the user once, then went offline
    user_id = world.user["id"]

    async def scenario() -> tuple[list[tuple[str, int]], list[str]]:
        client = await world.bot_client()
        seen: list[tuple[str, int]] = []

        async def on_message(event: events.NewMessage.Event) -> None:
            peer = await event.get_input_sender()
            seen.append((event.raw_text, peer.access_hash))

        client.add_event_handler(on_message, events.NewMessage(incoming=True))
        await client.catch_up()
        await _user_says(world, "before")
        await wait_until_async(lambda: len(seen) == 1, 5, "'before'")
        await client.disconnect()
        # When the user's hash changes and the user writes while the bot is offline
        await asyncio.to_thread(world.sim.rehash_user, user_id)
        await _user_says(world, "while away")
        await client.connect()
        await client.catch_up()
        try:
            await wait_until_async(lambda: len(seen) == 2, 5, "the missed message")
            # Then the message from getDifference came with the new hash, which works
            await client.send_message(types.InputPeerUser(user_id, seen[1][1]), "welcome back")
            received = await asyncio.to_thread(world.sim.wait_received, user_id, 1)
            return seen, [m["text"] for m in received]
        finally:
            await client.disconnect()

    seen, received = run(scenario())
    assert [text for text, _ in seen] == ["before", "while away"]
    assert seen[0][1] != seen[1][1]
    assert received == ["welcome back"]


def test_a_rehash_survives_a_simulator_restart(tmp_path: Path, run: Callable[..., Any]) -> None:
    # Given a simulator with a state file, where a bot saw a user's hash change
    state = tmp_path / "sim.json"
    with SimulatorThread(state_path=state) as first:
        world = World(first, first.create_bot(), first.create_user("Kim", username="kim_user"))

        async def first_life() -> tuple[int, int, str]:
            client = await world.bot_client(receive_updates=False)
            try:
                old = await _resolved_hash(client, "kim_user")
                await asyncio.to_thread(first.rehash_user, world.user["id"])
                return old, await _resolved_hash(client, "kim_user"), str(client.session.save())
            finally:
                await client.disconnect()

        old, new, session = run(first_life())
        port = first.port
    # When the simulator starts again from its state file
    with SimulatorThread(state_path=state, port=port) as second:

        async def second_life() -> tuple[str, int]:
            client = new_client(second.host, second.port, second.public_pem, session=session)
            await client.connect()
            try:
                with pytest.raises(PeerIdInvalidError) as caught:
                    await client.send_message(types.InputPeerUser(world.user["id"], old), "x")
                await client.send_message(types.InputPeerUser(world.user["id"], new), "kept")
                return type(caught.value).__name__, await _resolved_hash(client, "kim_user")
            finally:
                await client.disconnect()

        error, resolved = run(second_life())
    # Then the old hash is still refused and the new one still works
    assert error == "PeerIdInvalidError"
    assert resolved == new
