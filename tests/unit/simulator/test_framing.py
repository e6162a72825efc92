"""The simulator's MTProto transports, sans-IO: sniffing, framing, damaged streams."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tgfleet.simulator.framing import FrameCodec, FrameError, Transport

payloads = st.lists(st.binary(min_size=0, max_size=600).map(lambda b: b + b"\0" * (-len(b) % 4)))


@pytest.mark.parametrize(
    ("tag", "transport"),
    [
        (b"", Transport.FULL),
        (b"\xee\xee\xee\xee", Transport.INTERMEDIATE),
        (b"\xdd\xdd\xdd\xdd", Transport.PADDED_INTERMEDIATE),
        (b"\xef", Transport.ABRIDGED),
    ],
)
@given(frames=payloads, split=st.integers(min_value=1, max_value=97))
def test_frames_survive_any_split(
    tag: bytes, transport: Transport, frames: list[bytes], split: int
) -> None:
    # Given frames encoded by a codec of the sniffed transport
    writer = FrameCodec()
    writer.transport = transport
    stream = tag + b"".join(writer.encode(f) for f in frames)
    # When the stream arrives in arbitrary chunks
    reader = FrameCodec()
    got: list[bytes] = []
    for i in range(0, len(stream), split):
        got.extend(reader.feed(stream[i : i + split]))
    # Then the transport is sniffed and every frame comes out intact, in order
    assert got == frames
    assert reader.transport is (transport if stream else None)


def test_bad_crc_and_oversized_frames_are_errors() -> None:
    # Given a Full-transport frame with a corrupted CRC, and an oversized Intermediate one
    codec = FrameCodec()
    codec.transport = Transport.FULL
    frame = bytearray(codec.encode(b"\x01" * 16))
    frame[-1] ^= 0xFF
    # When they are fed, Then FrameError is raised
    with pytest.raises(FrameError):
        FrameCodec().feed(bytes(frame))
    with pytest.raises(FrameError):
        FrameCodec(max_frame=1024).feed(b"\xee" * 4 + struct.pack("<i", 4096))


def test_long_abridged_frames_use_the_three_byte_length() -> None:
    # Given an Abridged payload of 127 words or more (the one-byte length tops out at 126)
    writer = FrameCodec()
    writer.transport = Transport.ABRIDGED
    payload = bytes(range(256)) * 2  # 128 words
    frame = writer.encode(payload)
    # Then its header is 0x7f and a three-byte word count, and it reads back whole
    assert frame[:4] == b"\x7f" + (128).to_bytes(3, "little")
    assert FrameCodec().feed(b"\xef" + frame) == [payload]


def test_a_full_transport_frame_out_of_sequence_is_an_error() -> None:
    # Given two frames of one connection, When the second arrives first, Then FrameError
    writer = FrameCodec()
    writer.transport = Transport.FULL
    writer.encode(b"\x00" * 8)
    second = writer.encode(b"\x01" * 8)
    with pytest.raises(FrameError, match="sequence 1, expected 0"):
        FrameCodec().feed(second)


@pytest.mark.parametrize(
    ("transport", "framed"),
    [
        (None, struct.pack("<i", -404)),
        (Transport.FULL, struct.pack("<i", -404)),
        (Transport.INTERMEDIATE, struct.pack("<i", 4) + struct.pack("<i", -404)),
        (Transport.ABRIDGED, b"\x01" + struct.pack("<i", -404)),
    ],
)
def test_transport_errors_are_framed_as_telegram_sends_them(
    transport: Transport | None, framed: bytes
) -> None:
    codec = FrameCodec()
    codec.transport = transport
    assert codec.encode_error(-404) == framed
