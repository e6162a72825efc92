"""MTProto TCP transports (Full, Intermediate, padded Intermediate, Abridged), sans-IO.

The transport is sniffed from the first bytes a client sends, as Telegram does: ``0xef``
is Abridged, ``eeeeeeee`` Intermediate, ``dddddddd`` padded Intermediate, anything else
is the Full transport (length, sequence number, payload, CRC32).
"""

from __future__ import annotations

import enum
import struct
from zlib import crc32

DEFAULT_MAX_FRAME = 1024 * 1024

_INTERMEDIATE_TAG = b"\xee\xee\xee\xee"
_PADDED_TAG = b"\xdd\xdd\xdd\xdd"
_ABRIDGED_TAG = 0xEF


class FrameError(Exception):
    """The byte stream is not a valid transport stream; the connection must be closed."""


class Transport(enum.Enum):
    FULL = "full"
    INTERMEDIATE = "intermediate"
    PADDED_INTERMEDIATE = "padded_intermediate"
    ABRIDGED = "abridged"


class FrameCodec:
    """Splits a client's byte stream into payloads and frames the server's payloads."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self.transport: Transport | None = None
        self._buffer = bytearray()
        self._send_seq = 0
        self._recv_seq = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete payloads now available."""
        self._buffer += data
        if self.transport is None and not self._sniff():
            return []
        frames: list[bytes] = []
        while True:
            frame = self._next_frame()
            if frame is None:
                return frames
            frames.append(frame)

    def _sniff(self) -> bool:
        buf = self._buffer
        if not buf:
            return False
        if buf[0] == _ABRIDGED_TAG:
            self.transport = Transport.ABRIDGED
            del buf[:1]
            return True
        if len(buf) < 4:
            return False
        head = bytes(buf[:4])
        if head == _INTERMEDIATE_TAG:
            self.transport = Transport.INTERMEDIATE
            del buf[:4]
        elif head == _PADDED_TAG:
            self.transport = Transport.PADDED_INTERMEDIATE
            del buf[:4]
        else:
            self.transport = Transport.FULL
        return True

    def _check_length(self, length: int) -> None:
        if length < 0 or length > self.max_frame:
            raise FrameError(f"frame length {length} outside 0..{self.max_frame}")

    def _next_frame(self) -> bytes | None:
        buf = self._buffer
        if self.transport is Transport.FULL:
            if len(buf) < 8:
                return None
            total, seq = struct.unpack_from("<ii", buf)
            if total < 12:
                raise FrameError(f"full-transport length {total} < 12")
            self._check_length(total - 12)
            if len(buf) < total:
                return None
            (crc,) = struct.unpack_from("<I", buf, total - 4)
            if crc32(memoryview(buf)[: total - 4]) != crc:
                raise FrameError("full-transport CRC32 mismatch")
            if seq != self._recv_seq:
                raise FrameError(f"full-transport sequence {seq}, expected {self._recv_seq}")
            self._recv_seq += 1
            payload = bytes(buf[8 : total - 4])
            del buf[:total]
            return payload
        if self.transport is Transport.ABRIDGED:
            if not buf:
                return None
            length, header = buf[0] & 0x7F, 1
            if length == 0x7F:
                if len(buf) < 4:
                    return None
                length, header = int.from_bytes(buf[1:4], "little"), 4
            length <<= 2
        else:
            if len(buf) < 4:
                return None
            (length,) = struct.unpack_from("<i", buf)
            header = 4
        self._check_length(length)
        if len(buf) < header + length:
            return None
        payload = bytes(buf[header : header + length])
        del buf[: header + length]
        if self.transport is Transport.PADDED_INTERMEDIATE and len(payload) % 4:
            payload = payload[: -(len(payload) % 4)]
        return payload

    def encode(self, payload: bytes) -> bytes:
        """Frame one payload for the sniffed transport."""
        if self.transport is Transport.ABRIDGED:
            words = len(payload) >> 2
            if words < 0x7F:
                return bytes((words,)) + payload
            return b"\x7f" + words.to_bytes(3, "little") + payload
        if self.transport is Transport.FULL:
            head = struct.pack("<ii", len(payload) + 12, self._send_seq)
            self._send_seq += 1
            return head + payload + struct.pack("<I", crc32(payload, crc32(head)))
        return struct.pack("<i", len(payload)) + payload

    def encode_error(self, code: int) -> bytes:
        """A transport error (e.g. -404 for an unknown auth key), as Telegram sends it."""
        body = struct.pack("<i", code)
        if self.transport in (None, Transport.FULL):
            return body
        return self.encode(body)
