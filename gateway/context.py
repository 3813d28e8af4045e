"""What a request handler is given: its transaction, the caller, and effects to run after commit."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
import redis

from broker_contracts.errors import ErrorCode, RfarmError
from broker_contracts.keys import Keys
from store.inbox import Answer
from store.users import User


@dataclass(frozen=True)
class GatewayConfig:
    prefix: str = "rf"
    token_ttl: float = 7 * 24 * 3600
    lease: float = 30.0
    claim_idle: float = 15.0
    max_deliveries: int = 5
    reply_ttl: int = 300
    reply_maxlen: int = 500
    inbox_keep: float = 7 * 24 * 3600
    fault: str | None = None
    # entries one request thread takes per read: a few, so that a burst is shared among the threads
    request_batch: int = int(os.environ.get("RFARM_REQUEST_BATCH", "8"))

    @property
    def keys(self) -> Keys:
        return Keys(self.prefix)


@dataclass
class Context:
    conn: psycopg.Connection
    config: GatewayConfig
    token: str | None
    reply_to: str
    user: User | None = None
    # Redis writes that must follow the commit (cancel signals, pause holds, watch subscriptions).
    after_commit: list[Callable[[redis.Redis], None]] = field(default_factory=list)
    # For a handler that records its own answer (handlers.RECORDS_OWN_ANSWER): what it records,
    # and whether it did.
    answer: Answer | None = None
    answered: bool = False

    @property
    def caller(self) -> User:
        if self.user is None:
            raise RfarmError(ErrorCode.AUTH_REQUIRED, "not logged in: run `rfarm login USER`")
        return self.user


class KeepWrites(RfarmError):
    """An error reply whose writes are still committed (a failed login counts against the user)."""
