"""Peer resolution for sends: chat id -> Telegram InputPeer, done right for a fleet.

The seeds' bot called ``get_input_entity(user_id)`` on a session that had never seen the
user and died with ``Could not find the input entity for PeerUser(...)``. Access hashes
are per *account*: the hash a listener saw is valid for every session of that bot, on
every node. So the chain is:

1. this process's LRU;
2. the ``entities`` store in PostgreSQL (filled from every update a listener saw);
3. the sending client's own session cache;
4. Telegram: ``users.getUsers`` with a hash we hold, ``contacts.resolveUsername`` when a
   username is known (a result is written back to the store);
5. not found: :class:`PeerNotFound` (the sender retries later with backoff).

Which step answered is reported as the ``source`` (counted in Redis by the sender).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from sqlalchemy import select
from sqlalchemy.orm import Session
from telethon import utils
from telethon.tl import types

from tgfleet.db import PeerType, TgUser
from tgfleet.db.entities import remember_entity
from tgfleet.db.prepared import Prepared, execute
from tgfleet.platform.errors import TgfleetError

InputPeer: TypeAlias = types.InputPeerUser | types.InputPeerChat | types.InputPeerChannel


class PeerNotFound(TgfleetError):
    """No access hash is known for the chat anywhere (yet)."""

    def __init__(self, bot_id: int, chat_id: int, reason: str) -> None:
        super().__init__(reason)
        self.bot_id = bot_id
        self.chat_id = chat_id
        self.reason = reason


@dataclass(frozen=True)
class ResolvedPeer:
    peer: InputPeer
    source: str


class TelegramLookup(Protocol):
    """The sending client's side of the chain (runs on the sender's event loop)."""

    def from_session(self, bot_id: int, peer_id: int) -> InputPeer | None: ...

    def from_api(
        self, bot_id: int, peer_id: int, access_hash: int | None, username: str | None
    ) -> tuple[InputPeer, str | None, str] | None:
        """(peer, username, "api_hash"|"api_username"), or None when Telegram knows nothing."""
        ...


class PeerCache:
    """A small thread-safe LRU of resolved peers, per process."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._items: OrderedDict[tuple[int, int], InputPeer] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, bot_id: int, chat_id: int) -> InputPeer | None:
        with self._lock:
            peer = self._items.get((bot_id, chat_id))
            if peer is not None:
                self._items.move_to_end((bot_id, chat_id))
            return peer

    def put(self, bot_id: int, chat_id: int, peer: InputPeer) -> None:
        with self._lock:
            self._items[(bot_id, chat_id)] = peer
            self._items.move_to_end((bot_id, chat_id))
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def invalidate(self, bot_id: int, chat_id: int) -> None:
        with self._lock:
            self._items.pop((bot_id, chat_id), None)


def _peer_kind(chat_id: int) -> tuple[int, PeerType]:
    """(Telegram id, kind) of a marked chat id (users > 0, chats -id, channels -100id)."""
    real_id, peer_cls = utils.resolve_id(chat_id)
    if peer_cls is types.PeerUser:
        return real_id, PeerType.USER
    if peer_cls is types.PeerChat:
        return real_id, PeerType.CHAT
    return real_id, PeerType.CHANNEL


#: The stored peer of one chat: every reply to a user not in the LRU yet reads it.
_STORED_PEER = Prepared(
    "tgfleet_stored_peer",
    ("bigint", "text", "bigint"),
    "SELECT access_hash, username FROM entities "
    "WHERE bot_id = $1 AND peer_type = $2::peer_type AND peer_id = $3",
)

#: The stored access hashes of many users of one bot ($2: their ids), for a batch.
_STORED_USERS = Prepared(
    "tgfleet_stored_users",
    ("bigint", "bigint[]"),
    f"SELECT peer_id, access_hash FROM entities WHERE bot_id = $1 "
    f"AND peer_type = '{PeerType.USER.value}' AND peer_id = ANY($2) "
    "AND access_hash IS NOT NULL",
)


def _make_peer(kind: PeerType, peer_id: int, access_hash: int) -> InputPeer:
    if kind is PeerType.USER:
        return types.InputPeerUser(peer_id, access_hash)
    if kind is PeerType.CHANNEL:
        return types.InputPeerChannel(peer_id, access_hash)
    return types.InputPeerChat(peer_id)


def prefetch_peers(
    session: Session, bot_id: int, chat_ids: list[int], cache: PeerCache
) -> set[int]:
    """Put the stored access hashes of ``chat_ids`` (private chats not in the LRU yet)
    into the LRU with one query, before a batch resolves them one by one; returns the
    chats it found (their source is the store, though the LRU answers)."""
    missing = [c for c in chat_ids if c > 0 and cache.get(bot_id, c) is None]
    if not missing:
        return set()
    found = execute(session, _STORED_USERS, bot_id, missing)
    for row in found:
        cache.put(bot_id, row.peer_id, types.InputPeerUser(row.peer_id, row.access_hash))
    return {row.peer_id for row in found}


def resolve_input_peer(
    session: Session,
    bot_id: int,
    chat_id: int,
    *,
    cache: PeerCache,
    telegram: TelegramLookup | None = None,
    distrust_hash: int | None = None,
) -> ResolvedPeer:
    """The InputPeer ``bot_id`` uses for ``chat_id``, or :class:`PeerNotFound`.

    ``distrust_hash``: a hash Telegram just refused (PEER_ID_INVALID); it is not taken
    from the LRU or the store again, only re-checked with the API.
    """
    peer_id, kind = _peer_kind(chat_id)
    if kind is PeerType.CHAT:
        return ResolvedPeer(types.InputPeerChat(peer_id), "static")
    if distrust_hash is None:
        cached = cache.get(bot_id, chat_id)
        if cached is not None:
            return ResolvedPeer(cached, "lru")
    else:
        cache.invalidate(bot_id, chat_id)
    rows = execute(session, _STORED_PEER, bot_id, str(kind), peer_id)
    row = rows[0] if rows else None
    stored_hash = row.access_hash if row is not None else None
    username = row.username if row is not None else None
    if stored_hash is not None and stored_hash != distrust_hash:
        peer = _make_peer(kind, peer_id, stored_hash)
        cache.put(bot_id, chat_id, peer)
        return ResolvedPeer(peer, "store")
    if username is None and kind is PeerType.USER:
        username = session.execute(
            select(TgUser.username).where(TgUser.bot_id == bot_id, TgUser.user_id == peer_id)
        ).scalar_one_or_none()
    if telegram is not None:
        found = telegram.from_session(bot_id, chat_id)
        if found is not None and getattr(found, "access_hash", None) != distrust_hash:
            cache.put(bot_id, chat_id, found)
            return ResolvedPeer(found, "session")
        answer = telegram.from_api(bot_id, chat_id, stored_hash, username)
        if answer is not None:
            peer, new_username, source = answer
            remember_entity(session, bot_id, kind, peer_id, _hash_of(peer), new_username)
            cache.put(bot_id, chat_id, peer)
            return ResolvedPeer(peer, source)
    where = "no access hash in the entity store, the sender's session or from Telegram"
    hint = (
        f"; @{username} did not resolve"
        if username
        else "; no username known (the user may never have written to the bot)"
    )
    raise PeerNotFound(bot_id, chat_id, f"cannot resolve chat {chat_id}: {where}{hint}")


def _hash_of(peer: InputPeer) -> int | None:
    value = getattr(peer, "access_hash", None)
    return int(value) if value is not None else None
