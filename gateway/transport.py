"""The request stream's transport: read, take over what a dead gateway left, reply and ack in one
go, dead-letter what keeps failing. What each request gets is the pipeline's (gateway/pipeline.py)."""

from __future__ import annotations

import logging
import threading

import redis
from psycopg_pool import ConnectionPool

from broker_contracts.codec import MAX_MESSAGE_BYTES
from broker_contracts.envelope import Reply, decode_envelope
from broker_contracts.errors import DecodeError, ErrorCode
from broker_contracts.keys import GATEWAY_GROUP
from gateway import bounded, faults
from gateway.context import GatewayConfig
from gateway.lanes import AuthLane
from gateway.pipeline import Answered, Pipeline, Request
from gateway.replies import ReplyStreams
from gateway.sealing import GatewayKey
from gateway.streams import Backoff, PackedPipeline, dead_letter, ensure_group, entry_id, no_group
from store.db import StoreUnavailable, reachable

log = logging.getLogger("rfarm.gateway")

REQUESTS_MAXLEN = 100_000  # what shells trim to; the gateway enforces it for clients that do not
# the most of one entry the gateway holds; a bigger one is dead-lettered unread (gateway/bounded.py)
ENTRY_LIMIT = 2 * MAX_MESSAGE_BYTES

Entry = tuple[str, dict[bytes, bytes]]


class RequestLoop:
    def __init__(
        self,
        r: redis.Redis,
        pool: ConnectionPool,
        config: GatewayConfig,
        consumer: str,
        stop: threading.Event,
        *,
        reclaims: bool = True,
        outage_deliveries: dict[str, int] | None = None,
        replies: ReplyStreams | None = None,
        lane: AuthLane | None = None,
        key: GatewayKey | None = None,
    ) -> None:
        self.r = r
        self.config = config
        self.keys = config.keys
        self.consumer = consumer
        self.stop = stop
        self.pool = pool
        self.pipeline = Pipeline(r, pool, config, key)
        # shared by a gateway's request threads and its auth lane; without a lane (a loop driven
        # on its own), password-hashing requests are answered in line with the others
        self.replies = replies or ReplyStreams(config)
        self.lane = lane
        # Only one request thread of a gateway takes over unacked entries. A poison request kills
        # the whole process, and with it whatever another thread was answering: were two threads
        # reclaiming, an innocent request could be in flight at every one of the poison's crashes
        # and be given up with it. One reclaiming thread answers them one at a time, least
        # delivered first, as before; the other threads only read new entries.
        self.reclaims = reclaims
        self.redis_backoff = Backoff("redis (requests)")
        self.store_backoff = Backoff("postgresql (requests)")
        # entry id -> deliveries of it that ended in a database outage (not the request's fault);
        # shared by the request threads of a gateway, since the reclaiming one does the counting
        self.outage_deliveries: dict[str, int] = {} if outage_deliveries is None else outage_deliveries

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        pending_first = True  # after a restart, our own unacked entries come first
        group_ready = False
        while not self.stop.is_set():
            if self.store_backoff.failing_since is not None:
                if not reachable(self.pool):
                    # PostgreSQL away from this gateway: take no request it could not answer;
                    # another gateway that reaches the database answers them meanwhile (and takes
                    # over, after claim-idle, those this one took before it knew)
                    self.stop.wait(self.store_backoff.failed(StoreUnavailable()))
                    continue
                self.store_backoff.ok()
            try:
                if not group_ready:
                    ensure_group(self.r, self.keys.requests, GATEWAY_GROUP)
                    group_ready = True
                if pending_first and self.reclaims:
                    self.reclaim()
                pending_first = False
                entries = self.read()
                if entries:
                    self.process(entries)
                elif self.reclaims:
                    self.reclaim()
                self.redis_backoff.ok()
            except redis.RedisError as exc:  # Redis away (or restarted empty): unacked entries wait
                group_ready = False
                pending_first = True
                if not no_group(exc):  # a missing group is made again at once
                    self.stop.wait(self.redis_backoff.failed(exc))

    def read(self) -> list[Entry]:
        batch = self.config.request_batch
        got = bounded.xreadgroup(
            self.r, GATEWAY_GROUP, self.consumer, self.keys.requests, count=batch, block_ms=1000, limit=ENTRY_LIMIT
        )
        return self.without_oversize(got)

    def without_oversize(self, got: list[bounded.Entry | bounded.Oversize]) -> list[Entry]:
        """The entries read, after those over ENTRY_LIMIT are dead-lettered, acked and deleted:
        undecoded, so unanswered (their reply address was never read)."""
        oversize = [e for e in got if isinstance(e, bounded.Oversize)]
        if oversize:
            out = PackedPipeline(self.r)
            for e in oversize:
                reason = f"an entry of {e.size} bytes; the limit is {ENTRY_LIMIT}: dropped unread"
                dead_letter(out, self.keys, self.keys.requests, e.id, reason, None)
                log.warning("request %s dead-lettered: %s", e.id, reason)
            self.finish(out, [e.id for e in oversize])
        return [e for e in got if not isinstance(e, bounded.Oversize)]

    def reclaim(self) -> None:
        """Take over requests a dead gateway left unacked; give up on ones that keep failing.

        A reclaimed entry may be the one that killed the gateway. So entries idle past claim-idle
        are claimed one at a time, least delivered first, each answered and acked on its own:
        claiming counts a delivery, so innocent requests that sat in a batch with the poison get
        through before it is tried again, and only the poison reaches max_deliveries.
        """
        idle_ms = int(self.config.claim_idle * 1000)
        waiting = self.r.xpending_range(self.keys.requests, GATEWAY_GROUP, min="-", max="+", count=64, idle=idle_ms)
        for p in sorted(waiting, key=lambda p: int(p["times_delivered"])):
            if self.stop.is_set():
                return
            eid = entry_id(p["message_id"])
            if self.lane is not None and self.lane.holds(eid):  # idle because the lane is busy, not abandoned
                continue
            claimed = bounded.xclaim(
                self.r, self.keys.requests, GATEWAY_GROUP, self.consumer, idle_ms, [eid], limit=ENTRY_LIMIT
            )
            entries = self.without_oversize(claimed)
            if not entries:  # another gateway took it, or it was trimmed away while pending
                continue
            # deliveries that only met a database outage say nothing about the request itself
            delivered = int(p["times_delivered"]) + 1 - self.outage_deliveries.get(eid, 0)
            if not self.process(entries, delivered=delivered):
                return

    # --- one batch -----------------------------------------------------------------------------

    def process(self, entries: list[Entry], *, delivered: int = 0) -> bool:
        """Answer and ack a batch. False if the database was unavailable (the rest stays unacked)."""
        out = PackedPipeline(self.r)
        done: list[str] = []
        todo: list[tuple[str, Request | Answered]] = []
        for eid, fields in entries:
            payload = fields.get(b"m")
            if delivered > self.config.max_deliveries:
                self.give_up(out, eid, payload, f"delivered {delivered} times without an answer")
                done.append(eid)
                continue
            faults.trip(self.config.fault, "poison", payload)
            request = self.admit(self.pipeline.decode(payload))
            if isinstance(request, Request) and request.row.hashes_password and self.lane is not None:
                if self.lane.offer(eid, request):
                    continue  # answered and acked by the lane
                busy = "the farm is busy checking passwords: try again in a few seconds"
                request = Answered(Reply.failure(request.env.id, ErrorCode.RATE_LIMITED, busy), request.env.reply_to)
            todo.append((eid, request))
        tokens = {eid: request.env.token for eid, request in todo if isinstance(request, Request)}
        try:
            for eid, reply, to in self.pipeline.answer(todo):
                self.store_backoff.ok()
                if to is not None and reply is not None:
                    self.replies.send(out, to, reply, tokens.get(eid))
                done.append(eid)
        except StoreUnavailable as exc:
            # Leave the rest unacked: answered when the database is back (at-least-once).
            answered = set(done)
            for unanswered, _ in entries:
                if unanswered not in answered:
                    self.outage_deliveries[unanswered] = self.outage_deliveries.get(unanswered, 0) + 1
            self.finish(out, done)
            self.stop.wait(self.store_backoff.failed(exc))
            return False
        faults.trip(self.config.fault, "after_commit")
        self.finish(out, done)
        return True

    def admit(self, request: Request | Answered) -> Request | Answered:
        """The request, or its refusal when its answer would make one reply stream too many."""
        if not isinstance(request, Request):
            return request
        refused = self.replies.refusal(request.env)
        return request if refused is None else Answered(refused, request.env.reply_to)

    def finish(self, out: PackedPipeline, done: list[str]) -> None:
        """Replies first, then ack; an answered entry is deleted, so the stream stays short even
        when a client adds without trimming, and the stream as a whole is capped too."""
        if done:
            out.xack(self.keys.requests, GATEWAY_GROUP, *done)
            out.xdel(self.keys.requests, *done)
            for eid in done:
                self.outage_deliveries.pop(eid, None)
        if len(self.outage_deliveries) > 100_000:  # entries another gateway answered meanwhile
            self.outage_deliveries.clear()
        out.xtrim(self.keys.requests, maxlen=REQUESTS_MAXLEN, approximate=True)
        out.execute()

    def give_up(self, out: PackedPipeline, eid: str, payload: bytes | None, reason: str) -> None:
        dead_letter(out, self.keys, self.keys.requests, eid, reason, payload)
        try:
            env = decode_envelope(payload or b"")
        except DecodeError as exc:
            if exc.reply_to and exc.request_id:
                self.replies.send(out, exc.reply_to, Reply.failure(exc.request_id, ErrorCode.INTERNAL, reason), None)
            return
        failure = Reply.failure(env.id, ErrorCode.INTERNAL, "the farm could not process this request")
        self.replies.send(out, env.reply_to, failure, env.token)
        log.error("request %s dead-lettered: %s", eid, reason)
