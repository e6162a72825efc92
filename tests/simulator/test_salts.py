"""Server salts, as Telegram checks them: a message with a wrong salt is not processed but
answered with bad_server_salt (and a new session is announced with new_session_created);
Telethon, which starts every auth key with salt 0, takes the salt and sends again."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from typing import Any

import pytest
from telethon.extensions import BinaryReader
from telethon.network.mtprotostate import MTProtoState
from telethon.tl import functions, types
from telethon.tl.core import MessageContainer, RpcResult

from tests.support.simulator import World

pytestmark = pytest.mark.timeout(60)


def _counter(world: World, name: str) -> int:
    return int(world.sim.stats()["counters"].get(name, 0))


def _ask(sock: socket.socket, state: MTProtoState, msg_id: int, request: Any) -> list[Any]:
    """Send one request (Intermediate transport) and return the server's messages."""
    body = bytes(request)
    packet = state.encrypt_message_data(struct.pack("<qii", msg_id, 1, len(body)) + body)
    sock.sendall(struct.pack("<i", len(packet)) + packet)
    (length,) = struct.unpack("<i", sock.recv(4, socket.MSG_WAITALL))
    message = state.decrypt_message_data(sock.recv(length, socket.MSG_WAITALL))
    if isinstance(message.obj, MessageContainer):
        return [m.obj for m in message.obj.messages]
    return [message.obj]


def test_a_wrong_salt_is_refused_with_the_right_one(world: World, run: Callable[..., Any]) -> None:
    # Given a real auth key (made by a Telethon login)
    async def login() -> Any:
        client = await world.bot_client()
        key = client.session.auth_key
        await client.disconnect()
        return key

    key = run(login())
    state = MTProtoState(key, loggers={"telethon.network.mtprotostate": None})
    with socket.create_connection(("127.0.0.1", world.sim.port), timeout=5) as sock:
        sock.sendall(b"\xee" * 4)
        # When a request arrives with salt 0 on a new session
        first = _ask(sock, state, 5 << 32 | 4, functions.help.GetNearestDcRequest())
        created, bad = first
        # and again with the salt the server named
        state.salt = bad.new_server_salt
        second = _ask(sock, state, 6 << 32 | 4, functions.help.GetNearestDcRequest())
    # Then the first was not processed: the new session was announced with the salt, and
    # the message refused as bad_server_salt (error 48) naming the message
    assert isinstance(created, types.NewSessionCreated)
    assert isinstance(bad, types.BadServerSalt)
    assert (bad.bad_msg_id, bad.error_code, created.server_salt) == (
        5 << 32 | 4,
        48,
        bad.new_server_salt,
    )
    # and the second was answered, once, with no new session
    [result] = second
    assert isinstance(result, RpcResult) and result.req_msg_id == 6 << 32 | 4
    assert isinstance(BinaryReader(result.body).tgread_object(), types.NearestDc)


def test_telethon_recovers_from_bad_salts_at_login_and_after_a_restart(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a bot that logged in (its first message carried salt 0)
    async def scenario() -> tuple[int, int, int]:
        client = await world.bot_client(connection_retries=10, retry_delay=0.2)
        try:
            at_login = await asyncio.to_thread(_counter, world, "bad_server_salts")
            # When the simulator restarts (new salts) and the bot asks for itself
            await asyncio.to_thread(world.sim.restart, 0.2)
            me = await client.get_me()
            return at_login, await asyncio.to_thread(_counter, world, "bad_server_salts"), me.id
        finally:
            await client.disconnect()

    at_login, after_restart, me_id = run(scenario())
    # Then Telethon took the new salt each time and sent its request again
    assert at_login >= 1
    assert after_restart > at_login
    assert me_id == world.bot["id"]
