"""How an unmodified Telethon client connects to the simulator (or any MTProto server):
register the server's RSA public key, point a fresh session's DC 2 at host:port."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from telethon import TelegramClient
from telethon.crypto import rsa
from telethon.sessions import StringSession

# Telethon refuses an empty api_id/api_hash; the simulator ignores both.
SIMULATOR_API_ID = 1
SIMULATOR_API_HASH = "0123456789abcdef0123456789abcdef"


def register_rsa_key(pem: str | Path) -> None:
    """Register a PKCS#1 PEM (text or a file path) with Telethon's module-global key list."""
    text = Path(pem).read_text(encoding="utf-8") if isinstance(pem, Path) else pem
    if "BEGIN RSA PUBLIC KEY" not in text:
        text = Path(text).read_text(encoding="utf-8")
    rsa.add_key(text, old=False)


def session_for(host: str, port: int, session: str = "") -> StringSession:
    """A StringSession whose DC 2 is ``host:port``; an existing one keeps its auth key."""
    string_session = StringSession(session or None)
    auth_key = string_session.auth_key
    string_session.set_dc(2, host, port)
    if auth_key is not None:
        string_session.auth_key = auth_key
    return string_session


def connect_params(host: str, port: int, pem: str | Path) -> dict[str, Any]:
    """Keyword arguments for ``TelegramClient(**connect_params(...))`` (registers the key)."""
    register_rsa_key(pem)
    return {
        "session": session_for(host, port),
        "api_id": SIMULATOR_API_ID,
        "api_hash": SIMULATOR_API_HASH,
    }


def new_client(host: str, port: int, pem: str | Path, **kwargs: Any) -> TelegramClient:
    """A TelegramClient for the server at host:port; pass ``session=`` to reuse one."""
    params = connect_params(host, port, pem)
    session = kwargs.pop("session", None)
    if isinstance(session, str):
        params["session"] = session_for(host, port, session)
    elif session is not None:
        params["session"] = session
    return TelegramClient(**params, **kwargs)
