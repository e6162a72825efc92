"""Peer resolution on real PostgreSQL: the LRU, then the entity store, and a miss that
says why."""

from __future__ import annotations

import pytest

from tgfleet.db import Entity, PeerType, TgUser, session_scope
from tgfleet.platform.settings import Settings
from tgfleet.sends.resolve import PeerCache, PeerNotFound, resolve_input_peer


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
