"""What tests that speak the wire protocol themselves need to seal secrets as the shell does."""

from __future__ import annotations

from typing import Any

import psycopg
from nacl.public import PrivateKey, PublicKey
from psycopg.rows import dict_row

from broker_contracts.sealing import key_text, seal, unseal
from store import gateway_key

SEALED_PASSWORDS = ("auth.register", "auth.login")


def farm_private_key(database_url: str) -> PrivateKey:
    """The farm's key pair, as a gateway reads it (made now if no gateway has made it yet)."""
    fresh = PrivateKey.generate()
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        return PrivateKey(gateway_key.load_or_make(conn, bytes(fresh), bytes(fresh.public_key)))


def farm_key(database_url: str) -> PublicKey:
    return farm_private_key(database_url).public_key


def sealed_body(type_: str, body: dict[str, Any], key: PublicKey) -> tuple[dict[str, Any], PrivateKey | None]:
    """A login or register body with its clear ``password`` sealed as rfarm seals it, and the
    one-off key that opens the login's token (None for any other body, returned as it is)."""
    if type_ not in SEALED_PASSWORDS or "sealed_password" in body or not isinstance(body.get("password"), str):
        return body, None
    wire = {k: v for k, v in body.items() if k != "password"}
    wire["sealed_password"] = seal(key, body["password"].encode("utf-8"))
    if type_ != "auth.login":
        return wire, None
    answer = PrivateKey.generate()
    wire["answer_key"] = key_text(answer.public_key)
    return wire, answer


def opened_login(reply_body: dict[str, Any], answer: PrivateKey) -> dict[str, Any]:
    """A login reply's body with its token opened (``token``), as the shell that asked opens it."""
    return {**reply_body, "token": unseal(answer, reply_body["sealed_token"]).decode()}
