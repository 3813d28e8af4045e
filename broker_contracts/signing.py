"""Who wrote a message between gateways and nodes: Ed25519 signatures (PyNaCl).

A node signs each report with its own private key (its credential, issued by an operator); the
gateway keeps only the public key. Gateways sign each work item with the farm's signing key; nodes
hold its public key. What is signed is the entry's packed bytes exactly as they travel, after a
label naming the kind of message and the farm's key prefix, so a signature is good for nothing else.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey, VerifyKey

from broker_contracts.keys import valid_name

CREDENTIAL_TAG = "rfnode1"
KEY_BYTES = 32
SIGNATURE_BYTES = 64
_EVENT = b"rfarm node event\x00"
_WORK = b"rfarm work item\x00"


class CredentialError(ValueError):
    """A credential that cannot be used; the message is one line and names no secret."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class NodeCredential:
    """What a node is given once: its name, its private key, and the gateways' public key."""

    name: str
    seed: bytes
    gateway_key: bytes

    def text(self) -> str:
        return f"{CREDENTIAL_TAG}:{self.name}:{_b64(self.seed)}:{_b64(self.gateway_key)}"

    @property
    def public_key(self) -> bytes:
        return bytes(SigningKey(self.seed).verify_key)

    @classmethod
    def new(cls, name: str, gateway_key: bytes) -> NodeCredential:
        return cls(name, bytes(SigningKey.generate()), gateway_key)

    @classmethod
    def parse(cls, text: str) -> NodeCredential:
        parts = text.strip().split(":")
        if len(parts) != 4 or parts[0] != CREDENTIAL_TAG:
            raise CredentialError(f"not an rfarm node credential (expected {CREDENTIAL_TAG}:NAME:KEY:GATEWAY-KEY)")
        _, name, seed, gateway = parts
        if not valid_name(name):
            raise CredentialError("the credential's node name is not a valid name")
        try:
            raw_seed, raw_gateway = _unb64(seed), _unb64(gateway)
        except (binascii.Error, ValueError):
            raise CredentialError("the credential's keys are not base64") from None
        if len(raw_seed) != KEY_BYTES or len(raw_gateway) != KEY_BYTES:
            raise CredentialError("the credential's keys have the wrong length")
        return cls(name, raw_seed, raw_gateway)


def _labelled(label: bytes, prefix: str, data: bytes) -> bytes:
    return label + prefix.encode() + b"\x00" + data


class Signer:
    """Signs with one private key (a node's, or the gateways' work key)."""

    def __init__(self, seed: bytes) -> None:
        self._key = SigningKey(seed)
        self.public_key = bytes(self._key.verify_key)

    def sign_event(self, prefix: str, data: bytes) -> bytes:
        return self._key.sign(_labelled(_EVENT, prefix, data)).signature

    def sign_work(self, prefix: str, data: bytes) -> bytes:
        return self._key.sign(_labelled(_WORK, prefix, data)).signature


def _verify(label: bytes, public_key: bytes, prefix: str, data: bytes, signature: bytes | None) -> bool:
    if not signature or len(signature) != SIGNATURE_BYTES or len(public_key) != KEY_BYTES:
        return False
    try:
        VerifyKey(public_key).verify(_labelled(label, prefix, data), signature)
    except (BadSignatureError, CryptoError, ValueError, TypeError):
        return False
    return True


def event_is_signed_by(public_key: bytes, prefix: str, data: bytes, signature: bytes | None) -> bool:
    return _verify(_EVENT, public_key, prefix, data, signature)


def work_is_signed_by(public_key: bytes, prefix: str, data: bytes, signature: bytes | None) -> bool:
    return _verify(_WORK, public_key, prefix, data, signature)


def new_pair() -> tuple[bytes, bytes]:
    """A fresh key pair: (private seed, public key)."""
    key = SigningKey.generate()
    return bytes(key), bytes(key.verify_key)
