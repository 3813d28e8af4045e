"""Secrets sealed to a public key with libsodium (PyNaCl): a password on its way to the gateways and
a login's token on its way back to the shell that asked (sealed boxes), and the token of a request
bound to that one request (a box from the sending process's own key pair to the farm's). Keys in,
text out (base64, to travel inside a msgpack map).

A sealed box makes a new key pair and a key exchange for every message, which on every request a
shell sends cost more than the rest of a `jobs` request's CPU (docs/PERFORMANCE.md). A request's
token instead goes in a box between a key pair the process makes once and the farm's key: the
exchange is made once on each side (remembered by key, _sender and _receiver) and each request
costs only symmetric encryption. Someone reading the stream sees the process's public key and the box, which only the
farm's private key (or the process's, which never leaves it) opens; a box copied into another
request is refused, since what it holds is bound to its own request."""

from __future__ import annotations

import base64
import binascii
import hashlib
from functools import lru_cache
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey, SealedBox

from broker_contracts.codec import pack

KEY_BYTES = 32
BINDING_BYTES = 32
_MAC_BYTES = 16
_SEAL_OVERHEAD = KEY_BYTES + _MAC_BYTES  # a sealed box adds its ephemeral public key and a MAC
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


@lru_cache(maxsize=8)
def _sender(farm_key: bytes) -> tuple[bytes, Box]:
    """This process's public key and its box to a farm's key: made once per farm key."""
    mine = PrivateKey.generate()
    return bytes(mine.public_key), Box(mine, PublicKey(farm_key))


# Bounded: a stranger sending a new key with each request costs the gateway one key exchange each
# (what a sealed box costs every request) and pushes out the oldest boxes, nothing more.
@lru_cache(maxsize=4096)
def _receiver(key: PrivateKey, sender: bytes) -> Box:
    return Box(key, PublicKey(sender))


def seal_token(key: PublicKey, token: str, request_id: str, type_: str, body: dict[str, Any], reply_to: str) -> str:
    sender, box = _sender(bytes(key))
    sealed = box.encrypt(binding(request_id, type_, body, reply_to) + token.encode("utf-8"))
    return base64.b64encode(sender + bytes(sealed)).decode("ascii")


def _open_box(key: PrivateKey, text: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
        if len(raw) < KEY_BYTES + Box.NONCE_SIZE + _MAC_BYTES:
            raise ValueError("too short")
        return _receiver(key, raw[:KEY_BYTES]).decrypt(raw[KEY_BYTES:])
    except (binascii.Error, UnicodeEncodeError, CryptoError, ValueError, TypeError):
        raise SealError("not sealed to this farm's key") from None


def open_token(key: PrivateKey, sealed: str, request_id: str, type_: str, body: dict[str, Any], reply_to: str) -> str:
    """The token a request's envelope carries; SealError if it was sealed for another request."""
    data = _open_box(key, sealed)
    if len(data) < BINDING_BYTES or data[:BINDING_BYTES] != binding(request_id, type_, body, reply_to):
        raise SealError("the token was sealed for another request")
    try:
        return data[BINDING_BYTES:].decode("utf-8")
    except UnicodeDecodeError:
        raise SealError("the sealed token is not text") from None
