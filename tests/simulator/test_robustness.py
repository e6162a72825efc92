"""Bad input on the socket: the offending connection gets a transport error and is closed;
every other session keeps working."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telethon import events
from telethon.network.mtprotostate import MTProtoState

from tests.support.simulator import World, collect
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.timeout(90)
ERROR_404 = struct.pack("<i", -404)


def _exchange(port: int, data: bytes, timeout: float = 2.0) -> tuple[bytes, bool]:
    """Send ``data``; return what came back and whether the server closed the socket."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.settimeout(0.15)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            return received, False
        except ConnectionResetError:
            pass
        return received, True


class Listener:
    """A logged-in Telethon listener on its own loop thread, alive during fuzzing."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.seen: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client: Any = self.call(self._start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    async def _start(self) -> Any:
        client = await self.world.bot_client()
        client.add_event_handler(collect(self.seen), events.NewMessage())
        await client.catch_up()
        return client

    async def _stop(self) -> None:
        await self.client.disconnect()

    def close(self) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture
def listener(world: World) -> Iterator[Listener]:
    listening = Listener(world)
    yield listening
    listening.close()


def _still_served(world: World, listener: Listener, text: str) -> bool:
    world.sim.send(world.user["id"], world.bot["id"], text)

    async def wait() -> bool:
        return await wait_until_async(
            lambda: text in listener.seen, 5, f"the listener to hear {text!r}", poll=0.05
        )

    return bool(listener.call(wait()))


def test_unknown_auth_key_gets_404_and_is_closed(world: World) -> None:
    # Given an encrypted packet under an auth key the server never made
    packet = os.urandom(8) + os.urandom(16) + os.urandom(64)
    # When it arrives over the Full and over the Intermediate transport
    full = struct.pack("<ii", len(packet) + 12, 0) + packet
    from zlib import crc32

    full += struct.pack("<I", crc32(full))
    full_reply, full_closed = _exchange(world.sim.port, full)
    inter_reply, inter_closed = _exchange(
        world.sim.port, b"\xee" * 4 + struct.pack("<i", len(packet)) + packet
    )
    # Then the server answers the transport error -404 and closes
    assert (full_reply, full_closed) == (ERROR_404, True)
    assert (inter_reply, inter_closed) == (struct.pack("<i", 4) + ERROR_404, True)


def test_oversized_frame_is_refused(world: World) -> None:
    # Given an Abridged stream announcing a 64 MiB frame
    data = b"\xef\x7f" + (16 * 1024 * 1024 - 1).to_bytes(3, "little")
    # When it is sent, Then the connection gets -404 and is closed at once
    reply, closed = _exchange(world.sim.port, data)
    assert closed
    assert reply == b"\x01" + ERROR_404


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    prefix=st.sampled_from([b"", b"\xef", b"\xee\xee\xee\xee", b"\xdd\xdd\xdd\xdd"]),
    noise=st.binary(min_size=1, max_size=2048),
)
def test_random_frames_never_harm_other_sessions(
    world: World, listener: Listener, prefix: bytes, noise: bytes
) -> None:
    # Given a logged-in listener; When a connection sends random bytes
    reply, closed = _exchange(world.sim.port, prefix + noise, timeout=2.0)
    # Then that connection got at most a transport error (or waits for more bytes)
    assert reply in (b"", ERROR_404, struct.pack("<i", 4) + ERROR_404, b"\x01" + ERROR_404)
    assert closed or reply == b""


def test_listener_survives_fuzzing_and_malformed_tl(world: World, listener: Listener) -> None:
    # Given a real auth key (made by a Telethon handshake) sending malformed TL bodies
    key = listener.client.session.auth_key
    state = MTProtoState(key, loggers={"telethon.network.mtprotostate": None})
    bodies = [os.urandom(64), struct.pack("<I", 0x12345678) + os.urandom(60), b"\x00" * 32]
    for body in bodies:
        inner = struct.pack("<qii", 5 << 32 | 4, 1, len(body)) + body
        packet = state.encrypt_message_data(inner)
        # When each is sent on its own connection
        reply, closed = _exchange(
            world.sim.port, b"\xee" * 4 + struct.pack("<i", len(packet)) + packet
        )
        # Then that connection is closed with the transport error
        assert (reply, closed) == (struct.pack("<i", 4) + ERROR_404, True)
    # And the listener is still served
    assert _still_served(world, listener, "still here")
    assert world.sim.stats()["counters"]["protocol_errors"] >= len(bodies)
