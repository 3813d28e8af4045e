"""What a request handler is given: its transaction, the caller, and effects to run after commit."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis

from broker_contracts.errors import ErrorCode, RfarmError
from broker_contracts.keys import Keys
from store import nodes
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


class Specs:
    """Renderer specs as nodes announce them, kept a moment: each submit read the nodes table for
    its renderer's spec (one of its round trips). A spec a node changes is seen within ``ttl``
    seconds. That no node offers a renderer is kept only for a renderer with a built-in spec
    (``fallback``): an unknown one is looked up every time, so one a node has just announced is
    seen at once. One per request thread."""

    def __init__(self, ttl: float = 2.0, limit: int = 1000) -> None:
        self.ttl = ttl
        self.limit = limit
        self.known: dict[str, tuple[float, dict[str, Any] | None]] = {}

    def get(self, conn: psycopg.Connection, profile: str, *, fallback: bool = False) -> dict[str, Any] | None:
        now = time.monotonic()
        hit = self.known.get(profile)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        spec = nodes.spec_of(conn, profile)
        if spec is None and not fallback:
            self.known.pop(profile, None)
        else:
            if len(self.known) >= self.limit:
                self.known.clear()
            self.known[profile] = (now, spec)
        return spec


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
    specs: Specs | None = None  # the gateway's (a fresh lookup each time without)

    @property
    def caller(self) -> User:
        if self.user is None:
            raise RfarmError(ErrorCode.AUTH_REQUIRED, "not logged in: run `rfarm login USER`")
        return self.user


class KeepWrites(RfarmError):
    """An error reply whose writes are still committed (a failed login counts against the user)."""
