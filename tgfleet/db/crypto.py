"""Encryption of secrets stored in the database (bot tokens, Telethon sessions).

Fernet (AES-128-CBC + HMAC-SHA256) keyed by ``Settings.secret_key``. Ciphertexts are
stored as ``bytea``; the plaintext never reaches the database, the logs or audit rows.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken

from tgfleet.platform.errors import TgfleetError
from tgfleet.platform.settings import Settings


class SecretDecryptError(TgfleetError):
    """A stored secret could not be decrypted: wrong TGFLEET_SECRET_KEY or corrupt data."""


def _fernet(settings: Settings) -> Fernet:
    return Fernet(settings.secret_key.get_secret_value().encode())


def encrypt_secret(settings: Settings, plaintext: str | bytes) -> bytes:
    data = plaintext.encode() if isinstance(plaintext, str) else plaintext
    return _fernet(settings).encrypt(data)


def decrypt_secret(settings: Settings, ciphertext: bytes) -> bytes:
    try:
        return _fernet(settings).decrypt(bytes(ciphertext))
    except InvalidToken:
        raise SecretDecryptError(
            "cannot decrypt a stored secret: is TGFLEET_SECRET_KEY the key it was written with?"
        ) from None


def token_fingerprint(settings: Settings, token: str) -> str:
    """A keyed hash of a bot token: recognises a token without storing or decrypting it."""
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()[:32]
