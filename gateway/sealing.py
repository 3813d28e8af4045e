"""The gateways' key pair: kept in PostgreSQL, announced in Redis, and what opens the secrets
shells seal to it (passwords at login and register, the token of every request)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from nacl.public import PrivateKey, PublicKey
from psycopg_pool import ConnectionPool

from broker_contracts.errors import ErrorCode, RfarmError
from broker_contracts.keys import Keys
from broker_contracts.sealing import SealError, key_text, open_token, public_key, seal, unseal
from store import gateway_key
from store.db import StoreUnavailable, reading

log = logging.getLogger("rfarm.gateway")

ANNOUNCE_EVERY = 30.0  # seconds: a Redis restarted empty has the key again within this


class GatewayKey:
    """The farm's private key, read from PostgreSQL once (made there by the first gateway)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self._lock = threading.Lock()
        self._key: PrivateKey | None = None

    @property
    def private(self) -> PrivateKey:
        """Raises StoreUnavailable while PostgreSQL is away (the request waits, as for any other)."""
        with self._lock:
            if self._key is None:
                fresh = PrivateKey.generate()
                with reading(self.pool) as conn:  # autocommit: made and kept whatever the request does
                    raw = gateway_key.load_or_make(conn, bytes(fresh), bytes(fresh.public_key))
                self._key = PrivateKey(raw)
            return self._key

    @property
    def public(self) -> PublicKey:
        return self.private.public_key

    def announce(self, r: redis.Redis, keys: Keys) -> None:
        r.set(keys.gateway_key, key_text(self.public))

    def password(self, sealed: str) -> str:
        """The password a login or register body seals; request.invalid when it is not sealed to us."""
        try:
            return unseal(self.private, sealed).decode("utf-8")
        except (SealError, UnicodeDecodeError):
            raise RfarmError(
                ErrorCode.REQUEST_INVALID,
                "the password is not sealed to this farm's key: run `rfarm login` again "
                "(with --accept-new-farm-key if an operator replaced the key)",
            ) from None

    def token(self, sealed: str, request_id: str, type_: str, body: dict[str, Any], reply_to: str) -> str:
        """The token a request's envelope seals for this very request."""
        try:
            return open_token(self.private, sealed, request_id, type_, body, reply_to)
        except SealError as exc:
            raise RfarmError(ErrorCode.AUTH_TOKEN_INVALID, f"the request's token cannot be used: {exc}") from None


def keep_announcing(key: GatewayKey, r: redis.Redis, keys: Keys, stop: threading.Event) -> None:
    """Announce the public key at once and again every ANNOUNCE_EVERY seconds until ``stop``;
    an outage of either server is waited out."""
    while not stop.is_set():
        try:
            key.announce(r, keys)
        except (redis.RedisError, StoreUnavailable) as exc:
            log.warning("could not announce the farm's key yet: %s", exc)
            stop.wait(1.0)
            continue
        stop.wait(ANNOUNCE_EVERY)


def seal_for(answer_key: str, secret: str) -> str:
    """``secret`` sealed to the shell's one-off key ``answer_key`` (already checked as key text)."""
    return seal(public_key(answer_key), secret.encode("utf-8"))
