"""Encryption at rest for bot tokens and Telethon session strings (Fernet)."""

from __future__ import annotations

import hashlib

from cryptography.fernet import Fernet, InvalidToken

from tgfleet.platform.errors import TgfleetError
from tgfleet.platform.settings import Settings


class SecretDecryptError(TgfleetError):
    """Stored ciphertext does not open with TGFLEET_SECRET_KEY (rotated or wrong key)."""


class SecretBox:
    """Encrypts and decrypts small secrets with the deployment's Fernet key."""

    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode())

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        return cls(settings.secret_key.get_secret_value())

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, ciphertext: bytes, what: str = "secret") -> str:
        try:
            return self._fernet.decrypt(bytes(ciphertext)).decode()
        except InvalidToken:
            raise SecretDecryptError(
                f"the stored {what} cannot be decrypted with TGFLEET_SECRET_KEY: was the key "
                "changed? Restore the old key, or re-add the secret (e.g. `tgfleet bots add`)"
            ) from None


def fingerprint(secret: str) -> str:
    """A short, non-reversible id for a secret, safe to log and compare."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]
