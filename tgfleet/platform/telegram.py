"""The one factory every Telethon client of tgfleet is built through.

It applies the Telegram server override from Settings (``TG_SERVER``,
``TG_SERVER_RSA_KEY_FILE``, ``TG_SERVER_DC``), so the same code talks to real
Telegram, Telegram's test DCs, a private MTProto server, or tgfleet's simulator.
"""

from __future__ import annotations

import logging
from typing import Any

from telethon import TelegramClient
from telethon.crypto import rsa
from telethon.errors import AuthKeyError, UnauthorizedError
from telethon.errors.common import AuthKeyNotFound
from telethon.sessions import StringSession

from tgfleet.platform.errors import ConfigError
from tgfleet.platform.settings import Settings

log = logging.getLogger(__name__)
_registered_keys: set[str] = set()


def register_server_key(settings: Settings) -> None:
    """Register the override server's RSA key with Telethon (once per process)."""
    path = settings.tg_server_rsa_key_file
    if path is None or str(path) in _registered_keys:
        return
    try:
        pem = path.read_text()
    except OSError as exc:
        raise ConfigError(
            f"TG_SERVER_RSA_KEY_FILE cannot be read ({exc.strerror}): point it at the "
            "server's PKCS#1 RSA public key PEM file"
        ) from None
    if "BEGIN RSA PUBLIC KEY" not in pem:
        raise ConfigError(
            "TG_SERVER_RSA_KEY_FILE is not a PKCS#1 PEM ('-----BEGIN RSA PUBLIC KEY-----')"
        )
    rsa.add_key(pem, old=False)
    _registered_keys.add(str(path))


#: What Telegram answers when a stored session can never work again: the server does not
#: know its auth key (-404: lost, destroyed, or another server), the key was revoked or
#: unregistered (401), or it was used from two places at once (AUTH_KEY_DUPLICATED).
INVALID_SESSION_ERRORS: tuple[type[BaseException], ...] = (
    AuthKeyNotFound,
    AuthKeyError,
    UnauthorizedError,
)


def session_is_invalid(exc: BaseException) -> bool:
    """True when ``exc`` means the stored session must be dropped and the bot log in again
    (not for a network error, a timeout or a flood wait: those pass, the session stays)."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        if isinstance(error, INVALID_SESSION_ERRORS):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def aes_backend() -> str:
    """Which AES implementation Telethon uses: cryptg, libssl or the slow pure-Python one."""
    from telethon.crypto import aes

    if getattr(aes, "cryptg", None) is not None:
        return "cryptg"
    if getattr(aes, "libssl", None) is not None and aes.libssl.encrypt_ige:
        return "libssl"
    return "python"


def make_client(
    settings: Settings,
    session: str | None = None,
    *,
    receive_updates: bool = True,
    flood_sleep_threshold: int = 0,
    **kwargs: Any,
) -> TelegramClient:
    """A TelegramClient for ``session`` (a StringSession string; None for a new one).

    ``flood_sleep_threshold`` defaults to 0: tgfleet defers FloodWait to the task
    queue instead of sleeping inside a client call.
    """
    string_session = StringSession(session)
    address = settings.tg_server_address
    if address is not None:
        if settings.tg_server_rsa_key_file is None:
            raise ConfigError(
                "TG_SERVER is set but TG_SERVER_RSA_KEY_FILE is not: a custom MTProto server "
                "needs its RSA public key (PKCS#1 PEM file)"
            )
        register_server_key(settings)
        moved = (string_session.server_address, string_session.port) != address
        if session is None or moved:
            # An auth key belongs to one server: a session saved for another is re-keyed.
            string_session.set_dc(settings.tg_server_dc, address[0], address[1])
            string_session.auth_key = None
    return TelegramClient(
        string_session,
        settings.tg_api_id,
        settings.tg_api_hash.get_secret_value(),
        receive_updates=receive_updates,
        flood_sleep_threshold=flood_sleep_threshold,
        **kwargs,
    )
