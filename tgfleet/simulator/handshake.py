"""The server side of MTProto's Diffie-Hellman auth key exchange (mirror of Telethon's
``network/authenticator.py``), and the server's RSA key."""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass
from hashlib import sha1

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa as crypto_rsa
from telethon import helpers
from telethon.crypto import AES, AuthKey
from telethon.crypto import rsa as telethon_rsa
from telethon.extensions import BinaryReader
from telethon.tl import TLObject
from telethon.tl.functions import ReqDHParamsRequest, ReqPqMultiRequest, SetClientDHParamsRequest
from telethon.tl.types import (
    ClientDHInnerData,
    DhGenOk,
    PQInnerData,
    ResPQ,
    ServerDHInnerData,
    ServerDHParamsOk,
)

# Telegram's published 2048-bit safe prime, generator 3.
DH_PRIME = int(
    "c71caeb9c6b1c9048e6c522f70f13f73980d40238e3e21c14934d037563d930f"
    "48198a0aa7c14058229493d22530f4dbfa336f6e0ac925139543aed44cce7c37"
    "20fd51f69458705ac68cd4fe6b6b13abdc9746512969328454f18faf8c595f64"
    "2477fe96bb2a941d5bcd1d4ac8cc49880708fa9b378e3c4f3a9060bee67cf9a4"
    "a4a695811051907e162753b56b0f6b410dba74d8a84b2a14b3144e0ef1284754"
    "fd17ed950d5965b4b9dd46582db1178d169c6bc465b0d6ff9ca3928fef5b9ae4"
    "e418fc15e83ebea0f87fa9ff5eed70050ded2849f47bf959d956850ce929851f"
    "0d8115f635b105ee2e4e15d04b2454bf6f4fadf034b10403119cd8e3b92fcc5b",
    16,
)
DH_G = 3
_SAFETY = 2 ** (2048 - 64)
# pq the client must factorise: the product of two well-known primes, below 2**63.
_P, _Q = 998244353, 1000000007


class HandshakeError(Exception):
    """The client broke the key exchange protocol; close the connection."""


class ServerKey:
    """The server's RSA key pair; clients register the public half with Telethon."""

    def __init__(self, private_key: crypto_rsa.RSAPrivateKey) -> None:
        self._private = private_key
        numbers = private_key.private_numbers()
        self.n = numbers.public_numbers.n
        self.e = numbers.public_numbers.e
        self._d = numbers.d
        n_bytes = TLObject.serialize_bytes(telethon_rsa.get_byte_array(self.n))
        e_bytes = TLObject.serialize_bytes(telethon_rsa.get_byte_array(self.e))
        self.fingerprint: int = struct.unpack("<q", sha1(n_bytes + e_bytes).digest()[-8:])[0]

    @classmethod
    def generate(cls) -> ServerKey:
        return cls(crypto_rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def from_private_pem(cls, pem: str) -> ServerKey:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(key, crypto_rsa.RSAPrivateKey):
            raise ValueError("the stored simulator key is not an RSA private key")
        return cls(key)

    def private_pem(self) -> str:
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def public_pem(self) -> str:
        """PKCS#1 PEM, the format ``telethon.crypto.rsa.add_key(pem, old=False)`` wants."""
        return (
            self._private.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
            .decode()
        )

    def decrypt_block(self, cipher: bytes) -> bytes:
        """Textbook RSA, as Telethon's legacy ``rsa.encrypt`` (sha1 + data + random)."""
        value = int.from_bytes(cipher, "big")
        if value >= self.n:
            raise HandshakeError("RSA block out of range")
        return pow(value, self._d, self.n).to_bytes(256, "big")[1:]


@dataclass
class _Pending:
    nonce: int
    server_nonce: int
    new_nonce: int = 0
    a: int = 0


class Handshake:
    """One connection's key exchange: feed it plain requests, get plain answers back."""

    def __init__(self, key: ServerKey) -> None:
        self._key = key
        self._pending: _Pending | None = None

    def handle(self, request: TLObject) -> tuple[TLObject, AuthKey | None]:
        """Answer one step; the second item is the new auth key after the last step."""
        if isinstance(request, ReqPqMultiRequest):
            return self._res_pq(request), None
        if isinstance(request, ReqDHParamsRequest):
            return self._dh_params(request), None
        if isinstance(request, SetClientDHParamsRequest):
            return self._client_dh(request)
        raise HandshakeError(f"unexpected plain message {type(request).__name__}")

    def _res_pq(self, req: ReqPqMultiRequest) -> ResPQ:
        server_nonce = int.from_bytes(os.urandom(16), "big", signed=True)
        self._pending = _Pending(nonce=req.nonce, server_nonce=server_nonce)
        pq = telethon_rsa.get_byte_array(_P * _Q)
        return ResPQ(req.nonce, server_nonce, pq, [self._key.fingerprint])

    def _check_nonces(self, nonce: int, server_nonce: int) -> _Pending:
        pending = self._pending
        if pending is None or pending.nonce != nonce or pending.server_nonce != server_nonce:
            raise HandshakeError("nonce mismatch in key exchange")
        return pending

    def _dh_params(self, req: ReqDHParamsRequest) -> ServerDHParamsOk:
        pending = self._check_nonces(req.nonce, req.server_nonce)
        if req.public_key_fingerprint != self._key.fingerprint:
            raise HandshakeError("unknown RSA key fingerprint")
        block = self._key.decrypt_block(req.encrypted_data)
        inner = BinaryReader(block[20:]).tgread_object()
        if not isinstance(inner, PQInnerData) or inner.nonce != pending.nonce:
            raise HandshakeError("bad p_q_inner_data")
        pending.new_nonce = inner.new_nonce
        while True:
            pending.a = int.from_bytes(os.urandom(256), "big")
            g_a = pow(DH_G, pending.a, DH_PRIME)
            if _SAFETY <= g_a <= DH_PRIME - _SAFETY:
                break
        answer = bytes(
            ServerDHInnerData(
                nonce=pending.nonce,
                server_nonce=pending.server_nonce,
                g=DH_G,
                dh_prime=DH_PRIME.to_bytes(256, "big"),
                g_a=g_a.to_bytes(256, "big"),
                server_time=int(time.time()),
            )
        )
        data = sha1(answer).digest() + answer
        data += os.urandom(-len(data) % 16)
        key, iv = helpers.generate_key_data_from_nonce(pending.server_nonce, pending.new_nonce)
        return ServerDHParamsOk(pending.nonce, pending.server_nonce, AES.encrypt_ige(data, key, iv))

    def _client_dh(self, req: SetClientDHParamsRequest) -> tuple[DhGenOk, AuthKey]:
        pending = self._check_nonces(req.nonce, req.server_nonce)
        if not pending.a or len(req.encrypted_data) % 16:
            raise HandshakeError("set_client_DH_params out of order or misaligned")
        key, iv = helpers.generate_key_data_from_nonce(pending.server_nonce, pending.new_nonce)
        plain = AES.decrypt_ige(req.encrypted_data, key, iv)
        inner = BinaryReader(plain[20:]).tgread_object()
        if not isinstance(inner, ClientDHInnerData):
            raise HandshakeError("bad client_DH_inner_data")
        g_b = int.from_bytes(inner.g_b, "big")
        if not _SAFETY <= g_b <= DH_PRIME - _SAFETY:
            raise HandshakeError("g_b outside the safe range")
        auth_key = AuthKey(telethon_rsa.get_byte_array(pow(g_b, pending.a, DH_PRIME)))
        self._pending = None
        nonce_hash = auth_key.calc_new_nonce_hash(pending.new_nonce, 1)
        return DhGenOk(pending.nonce, pending.server_nonce, nonce_hash), auth_key
