"""The auth lane: requests that hash a password (argon2), answered apart from all others.

An argon2 hash is slow and memory-hard by design, and a stranger can ask for any number of them
without an account: answered in stream order by the request threads, a burst of them would keep
every logged-in user waiting. So a request whose registry row ``hashes_password`` is handed
to this lane: one thread (argon2-cffi releases the GIL, so the request threads go on meanwhile)
and a queue of ``auth_queue`` entries. When the queue is full the request is refused at once with
``rate_limited``; it never waits behind the others.

An entry handed to the lane stays unacked until its answer is sent: a gateway that dies with
entries in the queue leaves them to be taken over (at-least-once, the inbox keeps it idempotent).
"""

from __future__ import annotations

import logging
import queue
import threading

import redis
from psycopg_pool import ConnectionPool

from broker_contracts.keys import GATEWAY_GROUP
from gateway.context import GatewayConfig
from gateway.pipeline import Pipeline, Request
from gateway.replies import ReplyStreams
from gateway.streams import Backoff, PackedPipeline
from store.db import StoreUnavailable

log = logging.getLogger("rfarm.gateway")


class AuthLane:
    def __init__(
        self, r: redis.Redis, pool: ConnectionPool, config: GatewayConfig, stop: threading.Event, replies: ReplyStreams
    ) -> None:
        self.r = r
        self.keys = config.keys
        self.stop = stop
        self.replies = replies
        self.pipeline = Pipeline(r, pool, config)
        self.queue: queue.Queue[tuple[str, Request]] = queue.Queue(maxsize=max(1, config.auth_queue))
        self.held: set[str] = set()  # entries queued or being answered: not to be taken over here
        self.lock = threading.Lock()
        self.store_backoff = Backoff("postgresql (auth lane)")
        self.redis_backoff = Backoff("redis (auth lane)")

    def offer(self, eid: str, request: Request) -> bool:
        """Queue the entry to be answered and acked by the lane; False when the queue is full."""
        with self.lock:
            if eid in self.held:
                return True
            try:
                self.queue.put_nowait((eid, request))
            except queue.Full:
                return False
            self.held.add(eid)
        return True

    def holds(self, eid: str) -> bool:
        """The entry waits in the lane (idle in Redis, but not abandoned)."""
        with self.lock:
            return eid in self.held

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                eid, request = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.answer(eid, request)
            finally:
                with self.lock:
                    self.held.discard(eid)

    def answer(self, eid: str, request: Request) -> None:
        """Answer, send and ack one entry; on an outage it is left unacked, to be taken over."""
        try:
            reply, to = self.pipeline.respond(request)
            self.store_backoff.ok()
        except StoreUnavailable as exc:
            self.stop.wait(self.store_backoff.failed(exc))
            return
        out = PackedPipeline(self.r)
        if reply is not None and to is not None:
            self.replies.send(out, to, reply, request.env.token)
        out.xack(self.keys.requests, GATEWAY_GROUP, eid)
        out.xdel(self.keys.requests, eid)
        try:
            out.execute()
            self.redis_backoff.ok()
        except redis.RedisError as exc:
            self.stop.wait(self.redis_backoff.failed(exc))
