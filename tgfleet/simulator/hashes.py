"""Access hashes: what one account must present to reach a peer, and how they go stale.

A hash is ``HMAC-SHA256(server secret, account id || peer id)``: the same in every session
of a bot, different for another bot, as Telegram's are per account. A *rehash* (control
API) changes a peer's hash for every account, or for one, as happens on Telegram when an
account's view of a peer is reset: every request that presents the old hash then answers
``400 PEER_ID_INVALID``, and the new one reaches the bot the way Telegram hands out a
peer's hash: in the ``users`` of the next update or answer that names the peer.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any


class AccessHashes:
    """Access hashes of peers as accounts see them, with per-peer generations."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self._everyone: dict[int, int] = {}  # peer id -> generation for every account
        self._account: dict[tuple[int, int], int] = {}  # (account, peer) -> generation

    def of(self, account_id: int, peer_id: int) -> int:
        """The hash ``account_id`` must present for ``peer_id``; never 0."""
        everyone = self._everyone.get(peer_id, 0)
        account = self._account.get((account_id, peer_id), 0)
        if everyone or account:
            data = struct.pack("<qqqq", account_id, peer_id, everyone, account)
        else:  # the original scheme, so hashes saved before rehashing existed stay valid
            data = struct.pack("<qq", account_id, peer_id)
        digest = hmac.new(self.secret, data, hashlib.sha256).digest()
        value: int = struct.unpack("<q", digest[:8])[0]
        return value or 1

    def rehash(self, peer_id: int, account_id: int | None = None) -> None:
        """Give ``peer_id`` a new hash as every account (or only ``account_id``) sees it."""
        if account_id is None:
            self._everyone[peer_id] = self._everyone.get(peer_id, 0) + 1
        else:
            key = (account_id, peer_id)
            self._account[key] = self._account.get(key, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return {
            "everyone": [[peer, gen] for peer, gen in self._everyone.items()],
            "account": [[acc, peer, gen] for (acc, peer), gen in self._account.items()],
        }

    def load(self, data: dict[str, Any]) -> None:
        self._everyone = {int(peer): int(gen) for peer, gen in data.get("everyone", [])}
        self._account = {(int(a), int(p)): int(g) for a, p, g in data.get("account", [])}
