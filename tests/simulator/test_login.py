"""Logging in, sessions and identities, with the unmodified Telethon client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from telethon import events, functions
from telethon.errors import AccessTokenInvalidError, BadRequestError, PeerIdInvalidError
from telethon.tl import types

from tests.support.simulator import World, collect
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.timeout(60)


def test_bot_logs_in_and_get_me_returns_it(world: World, run: Callable[..., Any]) -> None:
    # Given a bot created in the simulator
    async def scenario() -> types.User:
        # When a fresh Telethon client logs in with its token
        client = await world.bot_client()
        try:
            return await client.get_me()
        finally:
            await client.disconnect()

    me = run(scenario())
    # Then get_me is that bot, with a usable access hash
    assert (me.id, me.username, me.bot, me.is_self) == (world.bot["id"], "test_bot", True, True)
    assert me.access_hash


def test_bad_token_raises_access_token_invalid(world: World, run: Callable[..., Any]) -> None:
    # Given a token the simulator never issued
    token = f"{world.bot['id']}:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

    async def scenario() -> None:
        client = world.client()
        try:
            # When a client logs in with it, Then Telethon raises ACCESS_TOKEN_INVALID
            with pytest.raises(AccessTokenInvalidError):
                await client.start(bot_token=token)
        finally:
            await client.disconnect()

    run(scenario())


def test_unknown_peer_raises_telethons_exact_value_error(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a logged-in bot that never saw the user
    async def scenario() -> str:
        client = await world.bot_client()
        try:
            # When it sends to the user's bare id
            with pytest.raises(ValueError) as caught:
                await client.send_message(world.user["id"], "hello")
            return str(caught.value)
        finally:
            await client.disconnect()

    # Then Telethon raises its real "Could not find the input entity" error
    message = run(scenario())
    assert message.startswith(
        f"Could not find the input entity for PeerUser(user_id={world.user['id']})"
    )


def test_two_sessions_are_authorised_and_only_the_listener_gets_pushes(
    world: World, run: Callable[..., Any]
) -> None:
    # Given two sessions (auth keys) of the same bot: a listener and a sender that
    # does not receive updates
    async def scenario() -> tuple[list[str], list[str], int]:
        listener = await world.bot_client()
        sender = await world.bot_client(receive_updates=False)
        heard: list[str] = []
        sender_heard: list[str] = []
        listener.add_event_handler(collect(heard), events.NewMessage())
        sender.add_event_handler(collect(sender_heard), events.NewMessage())
        await listener.catch_up()
        try:
            both_me = [(await c.get_me()).id for c in (listener, sender)]
            assert both_me == [world.bot["id"]] * 2
            # When the user writes to the bot
            await asyncio.to_thread(world.sim.send, world.user["id"], world.bot["id"], "ping")
            await wait_until_async(lambda: heard == ["ping"], 5, "the listener to hear 'ping'")
            await asyncio.sleep(0.3)  # (a quiet spell: a push to the sender would arrive in it)
            return heard, sender_heard, world.sim.stats()["authorized_keys"]
        finally:
            await listener.disconnect()
            await sender.disconnect()

    heard, sender_heard, authorized = run(scenario())
    # Then both keys are authorised but only the listening session got the push
    assert authorized == 2
    assert heard == ["ping"]
    assert sender_heard == []


def test_user_lookups_respect_per_account_access_hashes(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a bot that learned the user by username
    async def scenario() -> tuple[int, str, str]:
        client = await world.bot_client()
        try:
            user = await client.get_entity("ann_smith")
            # When it presents the right hash, a wrong one, and an unknown username
            full = await client(functions.users.GetFullUserRequest(user))
            with pytest.raises(PeerIdInvalidError) as wrong:
                await client(
                    functions.users.GetUsersRequest(
                        [types.InputUser(user.id, user.access_hash + 1)]
                    )
                )
            with pytest.raises(ValueError) as caught:
                await client.get_entity("nobody_here")
            return (
                full.full_user.id,
                type(wrong.value).__name__,
                type(caught.value.__cause__).__name__,
            )
        finally:
            await client.disconnect()

    # Then the right hash works, a wrong one is refused (as Telegram refuses a stale
    # one), and the name is unoccupied
    full_id, wrong, error = run(scenario())
    assert full_id == world.user["id"]
    assert wrong == "PeerIdInvalidError"
    assert error == "UsernameNotOccupiedError"


def test_unimplemented_method_answers_an_error_naming_it(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a logged-in bot
    async def scenario() -> str:
        client = await world.bot_client()
        try:
            # When it calls a method the simulator does not implement
            with pytest.raises(BadRequestError) as caught:
                await asyncio.wait_for(client(functions.account.GetPasswordRequest()), 5)
            return caught.value.message
        finally:
            await client.disconnect()

    # Then it gets an RPC error naming the method, not a hang
    assert run(scenario()) == "METHOD_NOT_IMPLEMENTED_ACCOUNT_GET_PASSWORD"


def test_log_out_unauthorises_the_auth_key(world: World, run: Callable[..., Any]) -> None:
    # Given a logged-in bot
    async def scenario() -> tuple[bool, bool]:
        client = await world.bot_client()
        key = client.session.auth_key
        before = await client.is_user_authorized()
        # When it logs out and a new client reuses the same auth key
        await client.log_out()
        again = world.client()
        again.session.auth_key = key
        await again.connect()
        try:
            return before, await again.is_user_authorized()
        finally:
            await again.disconnect()

    # Then the key is no longer authorised
    assert run(scenario()) == (True, False)
