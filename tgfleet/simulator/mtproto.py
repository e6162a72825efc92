"""MTProto 2.0 message layer, server side: encryption, message ids, containers."""

from __future__ import annotations

import gzip
import os
import struct
import time
from dataclasses import dataclass
from hashlib import sha256

from telethon.crypto import AES
from telethon.errors import TypeNotFoundError
from telethon.extensions import BinaryReader
from telethon.network.mtprotostate import MTProtoState
from telethon.tl import TLObject

CONTAINER_ID = 0x73F1F8DC
GZIP_ID = 0x3072CFA1
RPC_RESULT_ID = 0xF35C6D01
VECTOR_ID = 0x1CB5C415
BOOL_TRUE = struct.pack("<I", 0x997275B5)
_MAX_CONTAINER_DEPTH = 2


class MessageError(Exception):
    """An encrypted packet or its plaintext is malformed."""


@dataclass(slots=True)
class ClientMessage:
    msg_id: int
    seq_no: int
    body: TLObject


def vector(items: list[bytes]) -> bytes:
    """A bare ``Vector<T>`` as rpc results carry it."""
    return struct.pack("<Ii", VECTOR_ID, len(items)) + b"".join(items)


def rpc_result(req_msg_id: int, result: bytes) -> bytes:
    return struct.pack("<Iq", RPC_RESULT_ID, req_msg_id) + result


def decrypt(key: bytes, packet: bytes) -> tuple[int, int, bytes]:
    """Decrypt a client packet; returns (salt, session_id, inner message bytes)."""
    if len(packet) < 24 + 32 or (len(packet) - 24) % 16:
        raise MessageError(f"encrypted packet of {len(packet)} bytes")
    msg_key = packet[8:24]
    aes_key, aes_iv = MTProtoState._calc_key(key, msg_key, True)
    plain = AES.decrypt_ige(packet[24:], aes_key, aes_iv)
    if sha256(key[88:120] + plain).digest()[8:24] != msg_key:
        raise MessageError("msg_key mismatch")
    salt, session_id = struct.unpack_from("<qq", plain)
    return salt, session_id, plain[16:]


def encrypt(key: bytes, key_id: bytes, salt: int, session_id: int, message: bytes) -> bytes:
    """Encrypt one server message (msg_id, seq_no, length, body already packed)."""
    plain = struct.pack("<qq", salt, session_id) + message
    plain += os.urandom(-(len(plain) + 12) % 16 + 12)
    msg_key = sha256(key[96:128] + plain).digest()[8:24]
    aes_key, aes_iv = MTProtoState._calc_key(key, msg_key, False)
    return key_id + msg_key + AES.encrypt_ige(plain, aes_key, aes_iv)


def parse_messages(inner: bytes) -> list[ClientMessage]:
    """Parse ``msg_id | seq_no | len | body``, flattening containers and gzip."""
    if len(inner) < 16:
        raise MessageError("message header truncated")
    msg_id, seq_no, length = struct.unpack_from("<qii", inner)
    if length < 4 or 16 + length > len(inner):
        raise MessageError(f"message length {length} exceeds the packet")
    out: list[ClientMessage] = []
    _parse_body(msg_id, seq_no, inner[16 : 16 + length], out, 0)
    return out


def _parse_body(
    msg_id: int, seq_no: int, body: bytes, out: list[ClientMessage], depth: int
) -> None:
    (constructor,) = struct.unpack_from("<I", body)
    if constructor == CONTAINER_ID:
        if depth >= _MAX_CONTAINER_DEPTH:
            raise MessageError("nested message container")
        pos, (count,) = 8, struct.unpack_from("<i", body, 4)
        for _ in range(count):
            if pos + 16 > len(body):
                raise MessageError("container truncated")
            inner_id, inner_seq, length = struct.unpack_from("<qii", body, pos)
            if length < 4 or pos + 16 + length > len(body):
                raise MessageError("container item truncated")
            _parse_body(inner_id, inner_seq, body[pos + 16 : pos + 16 + length], out, depth + 1)
            pos += 16 + length
        return
    if constructor == GZIP_ID:
        if depth >= _MAX_CONTAINER_DEPTH:
            raise MessageError("nested gzip_packed")
        try:
            packed = BinaryReader(body[4:]).tgread_bytes()
            data = gzip.decompress(packed)
        except (OSError, EOFError, ValueError, struct.error) as exc:
            raise MessageError(f"bad gzip_packed: {exc}") from exc
        _parse_body(msg_id, seq_no, data, out, depth + 1)
        return
    out.append(ClientMessage(msg_id, seq_no, read_object(body)))


def read_object(body: bytes) -> TLObject:
    try:
        obj = BinaryReader(body).tgread_object()
    except TypeNotFoundError as exc:
        raise MessageError(f"unknown constructor {exc.invalid_constructor_id:#010x}") from exc
    except Exception as exc:  # a malformed body can fail anywhere inside Telethon's reader
        raise MessageError(f"malformed TL: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, TLObject):
        raise MessageError("top-level value is not a TL object")
    return obj


class MessageIds:
    """Strictly increasing server msg_ids: ``≡1 mod 4`` for responses, ``≡3`` for pushes."""

    def __init__(self) -> None:
        self._last = 0

    def next(self, push: bool) -> int:
        kind = 3 if push else 1
        candidate = (int(time.time() * 4294967296.0) & ~3) | kind
        if candidate <= self._last:
            candidate = ((self._last + 4) & ~3) | kind
        self._last = candidate
        return candidate
