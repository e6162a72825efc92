"""Auth keys and what they are authorised as: authorisation belongs to the key, not to a
TCP connection, so a client that reconnects with its key stays logged in."""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from telethon.crypto import AuthKey


def new_salt() -> int:
    return int(struct.unpack("<q", os.urandom(8))[0])


@dataclass(slots=True)
class AuthSession:
    """One auth key; ``listening`` once it asked for updates (updates.getState).

    ``salt`` is the server salt its messages must carry (a new one after a restart, as
    Telegram's salts change over time): a message with another gets ``bad_server_salt``.
    """

    key: bytes
    key_id: bytes
    bot_id: int | None = None
    listening: bool = False
    created: float = 0.0
    salt: int = field(default_factory=new_salt)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key.hex(),
            "bot_id": self.bot_id,
            "listening": self.listening,
            "created": self.created,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuthSession:
        session = SessionStore.make(bytes.fromhex(data["key"]))
        session.bot_id = data.get("bot_id")
        session.listening = bool(data.get("listening", False))
        session.created = float(data.get("created", 0.0))
        return session


class SessionStore:
    """All auth keys the server created, by their 8-byte key id."""

    def __init__(self) -> None:
        self._by_id: dict[bytes, AuthSession] = {}

    @staticmethod
    def make(key: bytes) -> AuthSession:
        key_id = struct.pack("<Q", AuthKey(key).key_id)
        return AuthSession(key=key, key_id=key_id, created=time.time())

    def add(self, key: bytes) -> AuthSession:
        session = self.make(key)
        self._by_id[session.key_id] = session
        return session

    def restore(self, session: AuthSession) -> None:
        self._by_id[session.key_id] = session

    def forget_bot(self, bot_id: int) -> int:
        """Forget every auth key logged in as ``bot_id``; returns how many."""
        gone = [k for k, session in self._by_id.items() if session.bot_id == bot_id]
        for key_id in gone:
            del self._by_id[key_id]
        return len(gone)

    def get(self, key_id: bytes) -> AuthSession | None:
        return self._by_id.get(key_id)

    def rotate_salts(self) -> None:
        """Every auth key gets a new server salt (its next message gets bad_server_salt)."""
        for session in self._by_id.values():
            session.salt = new_salt()

    def all(self) -> list[AuthSession]:
        return list(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)
