"""Unit tests of the sans-IO pieces: transport framing and flood buckets."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tgfleet.simulator.framing import FrameCodec, FrameError, Transport
from tgfleet.simulator.limits import FloodControl, FloodLimits

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


def test_private_chat_bucket_allows_a_burst_then_reports_the_wait() -> None:
    # Given 1 msg/s per private chat with a burst of 3, and 30/s per bot
    flood = FloodControl(FloodLimits(private_chat_rate=1.0, private_chat_burst=3))
    # When four messages go to one chat at the same instant
    waits = [flood.check(1, 100, now=10.0) for _ in range(4)]
    # Then three pass and the fourth must wait one second; another chat is unaffected
    assert waits == [0, 0, 0, 1]
    assert flood.check(1, 200, now=10.0) == 0
    assert flood.check(1, 100, now=11.0) == 0


def test_bot_bucket_limits_across_chats_and_can_be_switched_off() -> None:
    # Given a bot limit of 30/s
    flood = FloodControl(FloodLimits())
    # When 31 messages go to 31 different chats at once
    waits = [flood.check(1, chat, now=0.0) for chat in range(31)]
    # Then the 31st waits; with limits off nothing waits
    assert waits[:30] == [0] * 30 and waits[30] == 1
    flood.limits.update({"enabled": False})
    assert flood.check(1, 0, now=0.0) == 0


def test_group_limit_is_twenty_per_minute() -> None:
    flood = FloodControl(FloodLimits())
    # Given 20 messages to a group at once, When a 21st follows, Then it waits 3 s (60/20)
    assert [flood.check(1, -5, group=True, now=0.0) for _ in range(20)] == [0] * 20
    assert flood.check(1, -5, group=True, now=0.0) == 3
