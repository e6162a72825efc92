"""Peer resolution's pure parts: marked chat ids, and the per-process LRU of peers."""

from __future__ import annotations

import pytest
from telethon.tl import types

from tgfleet.db import PeerType
from tgfleet.sends.resolve import PeerCache, _make_peer, _peer_kind


@pytest.mark.parametrize(
    ("chat_id", "expected"),
    [
        (1001, (1001, PeerType.USER)),
        (-55, (55, PeerType.CHAT)),
        (-1001234567890, (1234567890, PeerType.CHANNEL)),
    ],
)
def test_a_marked_chat_id_says_what_it_is(chat_id: int, expected: tuple[int, PeerType]) -> None:
    assert _peer_kind(chat_id) == expected


def test_peers_are_built_for_their_kind() -> None:
    assert _make_peer(PeerType.USER, 1, 11) == types.InputPeerUser(1, 11)
    assert _make_peer(PeerType.CHANNEL, 2, 22) == types.InputPeerChannel(2, 22)
    assert _make_peer(PeerType.CHAT, 3, 0) == types.InputPeerChat(3)


def test_the_cache_forgets_the_least_recently_used() -> None:
    # Given a cache of two peers, the first of them just used
    cache = PeerCache(size=2)
    cache.put(42, 1, types.InputPeerUser(1, 11))
    cache.put(42, 2, types.InputPeerUser(2, 22))
    assert cache.get(42, 1) == types.InputPeerUser(1, 11)
    # When a third is put, Then the one not used since goes
    cache.put(42, 3, types.InputPeerUser(3, 33))
    assert cache.get(42, 2) is None
    assert cache.get(42, 1) is not None and cache.get(42, 3) is not None


def test_peers_are_per_bot_and_can_be_invalidated() -> None:
    # Access hashes are per account: bot 7's peer for chat 1 is not bot 42's
    cache = PeerCache()
    cache.put(42, 1, types.InputPeerUser(1, 11))
    assert cache.get(7, 1) is None
    cache.invalidate(42, 1)
    cache.invalidate(42, 1)  # twice is fine
    assert cache.get(42, 1) is None
