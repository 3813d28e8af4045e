"""What a request handler is given (its connection and caller) and what it gives back (an Outcome)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import redis

from broker_contracts.errors import ErrorCode, RfarmError
from broker_contracts.keys import Keys
from broker_contracts.messages import Body
from gateway.sealing import GatewayKey
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
    # a reply stream that only ever got errors (a stranger's, a bad token's) lives this long
    error_reply_ttl: int = 10
    # distinct live reply streams (shells) one login may have answers on, per gateway
    reply_streams_per_login: int = 1024
    # live reply streams of callers not known by a login (strangers logging in), per gateway
    anonymous_reply_streams: int = 1000
    watchers_per_job: int = 32
    # password-hashing requests waiting for the auth lane; more are refused at once
    auth_queue: int = 64
    inbox_keep: float = 7 * 24 * 3600
    # a node not heard from for this long is removed from the farm's list (`rfarm forget` by hand)
    forget_nodes_after: float = 7 * 24 * 3600
    fault: str | None = None
    # reports only from nodes with a credential (otherwise also from names that never had one)
    require_node_credentials: bool = False
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


Effect = Callable[[redis.Redis], None]


@dataclass(frozen=True)
class Context:
    """What the pipeline gives a handler. ``user``: the caller as the pipeline authenticated them
    (None for a request that needs no user, or whose statement checks the session itself)."""

    conn: psycopg.Connection
    config: GatewayConfig
    token: str | None
    reply_to: str
    user: User | None = None
    # for a write that records its own answer (RequestType.records_own_answer): what it records
    answer: Answer | None = None
    specs: Specs | None = None  # the gateway's (a fresh lookup each time without)
    key: GatewayKey | None = None  # opens the secrets shells seal to the farm's key

    @property
    def sealing(self) -> GatewayKey:
        if self.key is None:
            raise RuntimeError("this request needs the farm's key and was given none")
        return self.key

    @property
    def caller(self) -> User:
        if self.user is None:
            raise RfarmError(ErrorCode.AUTH_REQUIRED, "not logged in: run `rfarm login USER`")
        return self.user


@dataclass(frozen=True)
class Outcome:
    """What a handler decided, when it is more than its reply body: the Redis writes that must
    follow the commit (cancel signals, pause holds, watch subscriptions), and whether its own
    statement recorded its answer (RequestType.records_own_answer)."""

    body: Body | dict[str, Any]
    after_commit: tuple[Effect, ...] = ()
    recorded: bool = False


class KeepWrites(RfarmError):
    """An error reply whose writes are still committed (a failed login counts against the user)."""
