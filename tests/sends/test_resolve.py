"""Peer resolution on real PostgreSQL: the LRU, then the entity store, and a miss that
says why."""

from __future__ import annotations

import pytest

from tgfleet.db import Entity, PeerType, TgUser, session_scope
from tgfleet.platform.settings import Settings
from tgfleet.sends.resolve import PeerCache, PeerNotFound, prefetch_peers, resolve_input_peer


def test_resolution_prefers_lru_then_store_and_explains_a_miss(
    migrated: Settings, bot_id: int
) -> None:
    cache = PeerCache()
    with session_scope(migrated, bot_id=bot_id) as s:
        s.add(Entity(bot_id=bot_id, peer_type=PeerType.USER, peer_id=7, access_hash=777))
        s.add(TgUser(bot_id=bot_id, user_id=8, username="eight"))
    with session_scope(migrated, bot_id=bot_id) as s:
        first = resolve_input_peer(s, bot_id, 7, cache=cache)
        again = resolve_input_peer(s, bot_id, 7, cache=cache)
        assert (first.source, again.source) == ("store", "lru")
        assert (first.peer.user_id, first.peer.access_hash) == (7, 777)
        # A hash Telegram refused is not taken from the store again
        with pytest.raises(PeerNotFound, match="no username known"):
            resolve_input_peer(s, bot_id, 7, cache=cache, distrust_hash=777)
        with pytest.raises(PeerNotFound, match="@eight did not resolve"):
            resolve_input_peer(s, bot_id, 8, cache=cache)
        assert resolve_input_peer(s, bot_id, -55, cache=cache).source == "static"


def test_a_batch_s_stored_peers_come_in_one_query(migrated: Settings, bot_id: int) -> None:
    # Given stored hashes for users 1-3 (user 1 already in the LRU), none for user 4
    cache = PeerCache()
    with session_scope(migrated, bot_id=bot_id) as s:
        for user in (1, 2, 3):
            s.add(Entity(bot_id=bot_id, peer_type=PeerType.USER, peer_id=user, access_hash=user))
    with session_scope(migrated, bot_id=bot_id) as s:
        resolve_input_peer(s, bot_id, 1, cache=cache)
        # When a batch prefetches its chats (a group among them)
        found = prefetch_peers(s, bot_id, [1, 2, 3, 4, -55], cache)
    # Then the LRU holds the stored ones it lacked; the rest resolve as before
    assert found == {2, 3}
    assert cache.get(bot_id, 3) == resolve_input_peer(s, bot_id, 3, cache=cache).peer
    assert cache.get(bot_id, 4) is None
