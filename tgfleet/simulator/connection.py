"""One client TCP connection: transport framing, key exchange, encrypted messages.

Outgoing messages are queued and flushed once per event-loop iteration, several at a time
in one ``msg_container`` (one encryption, one socket write), which keeps per-message
overhead low when many pushes go out at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from typing import TYPE_CHECKING

from telethon.tl.functions import PingDelayDisconnectRequest, PingRequest
from telethon.tl.types import BadServerSalt, MsgsAck, NewSessionCreated, Pong

from tgfleet.simulator import mtproto
from tgfleet.simulator.framing import FrameCodec, FrameError
from tgfleet.simulator.handshake import Handshake, HandshakeError
from tgfleet.simulator.pushes import UPDATES_TOO_LONG
from tgfleet.simulator.render import MAX_BATCH, PushBatch
from tgfleet.simulator.sessions import AuthSession

if TYPE_CHECKING:
    from tgfleet.simulator.server import Simulator

log = logging.getLogger(__name__)

_PLAIN_KEY_ID = b"\x00" * 8
_CONTAINER_MAX_ITEMS = 500
_CONTAINER_MAX_BYTES = 256 * 1024
# A client that stops reading is cut off rather than buffered without bound.
MAX_WRITE_BUFFER = 32 * 1024 * 1024
TRANSPORT_ERROR = -404


class ProtocolViolation(Exception):
    """The client sent something the server cannot accept; the connection is closed."""


class ClientConnection(asyncio.Protocol):
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.codec = FrameCodec(sim.config.max_frame)
        self.transport: asyncio.Transport | None = None
        self.session: AuthSession | None = None
        self.closed = False
        self.peer = "?"
        self._handshake: Handshake | None = None
        self._session_id: int | None = None
        self._ids = mtproto.MessageIds()
        self._seq = 0
        # ("plain", body) for handshake replies; ("reply"|"pong"|"service", body) and
        # ("push", batch) for encrypted ones; consecutive pushes merge into one batch.
        self._outbox: list[tuple[str, bytes | PushBatch]] = []
        self._flush_handle: asyncio.Handle | None = None
        self._pending_updates = 0  # updates in the outbox
        self._too_long = False  # an updatesTooLong in the outbox stands for every push

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        if self.sim.refusing:
            self.closed = True
            transport.abort()
            return
        self.sim.register(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self.sim.unregister(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            for frame in self.codec.feed(data):
                self._on_frame(frame)
                if self.closed:
                    return
        except (
            FrameError,
            mtproto.MessageError,
            HandshakeError,
            ProtocolViolation,
            struct.error,
        ) as exc:
            self.fail(f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a simulator bug must not take other sessions down
            log.exception("simulator: unexpected error on connection from %s", self.peer)
            self.fail(f"internal error: {type(exc).__name__}")

    # -- incoming ----------------------------------------------------------------------

    def _on_frame(self, frame: bytes) -> None:
        if len(frame) < 8:
            raise ProtocolViolation(f"{len(frame)}-byte packet")
        key_id = frame[:8]
        if key_id == _PLAIN_KEY_ID:
            self._on_plain(frame)
            return
        session = self.sim.sessions.get(key_id)
        if session is None:
            self.fail("unknown auth key id")
            return
        if session is not self.session:
            self.session = session
            self.sim.bind(self)
        salt, session_id, inner = mtproto.decrypt(session.key, frame)
        messages = mtproto.parse_messages(inner)
        msg_id, seq_no = struct.unpack_from("<qi", inner)
        if session_id != self._session_id:
            # Telegram announces a session it has not seen, with the salt to use
            self._session_id = session_id
            unique_id = struct.unpack("<q", os.urandom(8))[0]
            self._enqueue("service", bytes(NewSessionCreated(msg_id, unique_id, session.salt)))
        if salt != session.salt:
            # A wrong salt (Telethon starts with 0): nothing in the packet is processed;
            # the client takes the new salt and sends it all again
            self.sim.stats["bad_server_salts"] += 1
            self._enqueue("service", bytes(BadServerSalt(msg_id, seq_no, 48, session.salt)))
            return
        for message in messages:
            self._on_message(message)

    def _on_plain(self, frame: bytes) -> None:
        if len(frame) < 24:
            raise ProtocolViolation("plain message truncated")
        _, length = struct.unpack_from("<qi", frame, 8)
        if length < 4 or 20 + length > len(frame):
            raise ProtocolViolation(f"plain message length {length}")
        request = mtproto.read_object(frame[20 : 20 + length])
        if self._handshake is None:
            self._handshake = Handshake(self.sim.server_key)
        answer, auth_key = self._handshake.handle(request)
        if auth_key is not None:
            self.sim.add_auth_key(auth_key.key)
        self._enqueue("plain", bytes(answer))

    def _on_message(self, message: mtproto.ClientMessage) -> None:
        body = message.body
        if isinstance(body, MsgsAck):
            return
        if isinstance(body, PingRequest | PingDelayDisconnectRequest):
            self._enqueue("pong", bytes(Pong(message.msg_id, body.ping_id)))
            return
        result = self.sim.rpc.call(self, body)
        self._enqueue("reply", mtproto.rpc_result(message.msg_id, result))

    # -- outgoing ----------------------------------------------------------------------

    def push(self, batch: PushBatch) -> None:
        """Queue pushed updates; merged with a push queued just before, if any. When more
        than ``max_pending_updates`` wait to be written, they are all replaced by one
        ``updatesTooLong``, as Telegram does for a session it cannot push to one by one."""
        if self._too_long:
            self.sim.stats["updates_not_pushed"] += len(batch.updates)
            return
        self._pending_updates += len(batch.updates)
        limit = self.sim.config.max_pending_updates
        if limit is not None and self._pending_updates > limit:
            self._outbox = [i for i in self._outbox if not isinstance(i[1], PushBatch)]
            self.sim.stats["updates_not_pushed"] += self._pending_updates
            self.push_too_long()
            return
        if self._outbox:
            last = self._outbox[-1][1]
            if isinstance(last, PushBatch) and len(last.updates) < MAX_BATCH:
                last.add(batch)
                return
        self._enqueue("push", PushBatch(list(batch.updates), dict(batch.users), dict(batch.chats)))

    def push_too_long(self) -> None:
        """Push ``updatesTooLong``: the client must call updates.getDifference."""
        if not self._too_long:
            self._too_long = True
            self.sim.stats["updates_too_long"] += 1
            self._enqueue("push", UPDATES_TOO_LONG)

    def _enqueue(self, kind: str, body: bytes | PushBatch) -> None:
        if self.closed:
            return
        self._outbox.append((kind, body))
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            delay = self.sim.stalled_until - loop.time()
            if delay > 0:
                self._flush_handle = loop.call_later(delay, self._flush)
            else:
                self._flush_handle = loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        if self.closed or self.transport is None:
            return
        loop = asyncio.get_running_loop()
        delay = self.sim.stalled_until - loop.time()
        if delay > 0:
            self._flush_handle = loop.call_later(delay, self._flush)
            return
        outbox, self._outbox = self._outbox, []
        self._pending_updates, self._too_long = 0, False
        chunks: list[bytes] = []
        batch: list[bytes] = []
        batch_bytes = 0
        for kind, item in outbox:
            body = item.to_bytes() if isinstance(item, PushBatch) else item
            if kind == "plain":
                chunks.extend(self._encrypt_batch(batch))
                batch, batch_bytes = [], 0
                msg_id = self._ids.next(push=False)
                plain = struct.pack("<qqi", 0, msg_id, len(body)) + body
                chunks.append(self.codec.encode(plain))
                continue
            batch.append(self._pack(kind, body))
            batch_bytes += len(body)
            if len(batch) >= _CONTAINER_MAX_ITEMS or batch_bytes >= _CONTAINER_MAX_BYTES:
                chunks.extend(self._encrypt_batch(batch))
                batch, batch_bytes = [], 0
        chunks.extend(self._encrypt_batch(batch))
        self.transport.write(b"".join(chunks))
        if self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.warning("simulator: %s stopped reading; closing its connection", self.peer)
            self.sim.stats["slow_consumers"] += 1
            self.closed = True
            self.transport.abort()

    def _pack(self, kind: str, body: bytes) -> bytes:
        if kind in ("pong", "service"):  # not content-related: an even seq_no
            seq_no = self._seq * 2
        else:
            seq_no = self._seq * 2 + 1
            self._seq += 1
        msg_id = self._ids.next(push=kind == "push")
        return struct.pack("<qii", msg_id, seq_no, len(body)) + body

    def _encrypt_batch(self, batch: list[bytes]) -> list[bytes]:
        if not batch or self.session is None:
            return []
        if len(batch) == 1:
            message = batch[0]
        else:
            body = struct.pack("<Ii", mtproto.CONTAINER_ID, len(batch)) + b"".join(batch)
            header = struct.pack("<qii", self._ids.next(push=False), self._seq * 2, len(body))
            message = header + body
        packet = mtproto.encrypt(
            self.session.key, self.session.key_id, self.session.salt, self._session_id or 0, message
        )
        return [self.codec.encode(packet)]

    # -- closing -----------------------------------------------------------------------

    def fail(self, reason: str) -> None:
        """Send a transport error and close: one log line, nothing else is affected."""
        if self.closed or self.transport is None:
            return
        log.warning("simulator: closing connection from %s: %s", self.peer, reason)
        self.sim.stats["protocol_errors"] += 1
        self.transport.write(self.codec.encode_error(TRANSPORT_ERROR))
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._outbox.clear()
        if self.transport is not None:
            self.transport.close()
