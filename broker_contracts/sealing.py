"""Secrets sealed to a public key with libsodium's sealed boxes (PyNaCl): a password on its way to
the gateways, a login's token on its way back to the shell that asked, and the token of a request
bound to that one request. Pure: keys in, text out (base64, to travel inside a msgpack map)."""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from broker_contracts.codec import pack

KEY_BYTES = 32
BINDING_BYTES = 32
_SEAL_OVERHEAD = 48  # a sealed box adds its ephemeral public key (32 bytes) and a MAC (16)
# the longest a password may be (1024 characters of up to 4 UTF-8 bytes) in base64 (4 characters per 3 bytes)
MAX_SEALED_TEXT = 4 * ((4 * 1024 + BINDING_BYTES + _SEAL_OVERHEAD + 2) // 3)


class SealError(ValueError):
    """Text that is not a box sealed to this key (or not for this request)."""


def key_text(key: PublicKey) -> str:
    return base64.b64encode(bytes(key)).decode("ascii")


def public_key(text: str) -> PublicKey:
    """A public key from its text; ValueError when it is not one."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("not a base64 key") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"a key is {KEY_BYTES} bytes")
    return PublicKey(raw)


def fingerprint(key: PublicKey) -> str:
    """A short name for a key, for people to compare: sha256:<first 16 hex digits>."""
    return "sha256:" + hashlib.sha256(bytes(key)).hexdigest()[:16]


def seal(key: PublicKey, data: bytes) -> str:
    return base64.b64encode(SealedBox(key).encrypt(data)).decode("ascii")


def unseal(key: PrivateKey, text: str) -> bytes:
    """What ``text`` seals to ``key``; SealError when it is anything else."""
    try:
        return SealedBox(key).decrypt(base64.b64decode(text.encode("ascii"), validate=True))
    except (binascii.Error, UnicodeEncodeError, CryptoError, ValueError, TypeError):
        raise SealError("not sealed to this farm's key") from None


def binding(request_id: str, type_: str, body: dict[str, Any], reply_to: str) -> bytes:
    """What ties a sealed token to one request: a copy of the box is worth nothing for another."""
    return hashlib.sha256(pack([request_id, type_, body, reply_to])).digest()


def seal_token(key: PublicKey, token: str, request_id: str, type_: str, body: dict[str, Any], reply_to: str) -> str:
    return seal(key, binding(request_id, type_, body, reply_to) + token.encode("utf-8"))


def open_token(key: PrivateKey, sealed: str, request_id: str, type_: str, body: dict[str, Any], reply_to: str) -> str:
    """The token a request's envelope carries; SealError if it was sealed for another request."""
    data = unseal(key, sealed)
    if len(data) < BINDING_BYTES or data[:BINDING_BYTES] != binding(request_id, type_, body, reply_to):
        raise SealError("the token was sealed for another request")
    try:
        return data[BINDING_BYTES:].decode("utf-8")
    except UnicodeDecodeError:
        raise SealError("the sealed token is not text") from None
