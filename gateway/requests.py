"""The request loop: read, decode, authenticate, handle in one transaction, reply, then ack."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from typing import Any

import redis
from psycopg_pool import ConnectionPool
from pydantic import ValidationError

from broker_contracts.codec import pack, unpack
from broker_contracts.envelope import Envelope, Reply, decode_envelope, encode_reply, first_error
from broker_contracts.errors import DecodeError, ErrorCode, RfarmError
from broker_contracts.keys import GATEWAY_GROUP
from broker_contracts.messages import REQUEST_TYPES, ListRequest
from gateway.context import Context, GatewayConfig, KeepWrites, Specs
from gateway.handlers import HANDLERS, RECORDS_OWN_ANSWER, SELF_AUTHENTICATING, plain_page, plain_pages
from gateway.streams import Backoff, Batch, dead_letter, ensure_group, entry_id, no_group, send_reply
from gateway.wire import id_reply_parts
from store import inbox, users
from store.db import Conflict, StoreUnavailable, reading, transaction

log = logging.getLogger("rfarm.gateway")

REQUESTS_MAXLEN = 100_000  # what shells trim to; the gateway enforces it for clients that do not


def body_hash(envelope: Envelope) -> bytes:
    """What makes a request the same request: its type, token and body."""
    return hashlib.sha256(pack([envelope.type, envelope.token, envelope.body])).digest()


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
    ) -> None:
        self.r = r
        self.pool = pool
        self.config = config
        self.keys = config.keys
        self.consumer = consumer
        self.stop = stop
        # Only one request thread of a gateway takes over unacked entries. A poison request kills
        # the whole process, and with it whatever another thread was answering: were two threads
        # reclaiming, an innocent request could be in flight at every one of the poison's crashes
        # and be given up with it. One reclaiming thread answers them one at a time, least
        # delivered first, as before; the other threads only read new entries.
        self.reclaims = reclaims
        self.specs = Specs()
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

    def read(self) -> list[tuple[str, dict[bytes, bytes]]]:
        got = self.r.xreadgroup(
            GATEWAY_GROUP, self.consumer, {self.keys.requests: ">"}, count=self.config.request_batch, block=1000
        )
        return [(entry_id(i), f) for _, items in got or [] for i, f in items]

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
            claimed = self.r.xclaim(self.keys.requests, GATEWAY_GROUP, self.consumer, idle_ms, [eid])
            entries = [(entry_id(i), f) for i, f in claimed if f is not None]
            if not entries:  # another gateway took it, or it was trimmed away while pending
                continue
            # deliveries that only met a database outage say nothing about the request itself
            delivered = int(p["times_delivered"]) + 1 - self.outage_deliveries.get(eid, 0)
            if not self.process(entries, delivered=delivered):
                return

    # --- one batch -----------------------------------------------------------------------------

    def process(self, entries: list[tuple[str, dict[bytes, bytes]]], *, delivered: int = 0) -> bool:
        """Answer and ack a batch. False if the database was unavailable (the rest stays unacked)."""
        pipe = Batch(self.r)
        done: list[str] = []
        todo: list[tuple[str, bytes | None]] = []
        for eid, fields in entries:
            payload = fields.get(b"m")
            if delivered > self.config.max_deliveries:
                self.give_up(pipe, eid, payload, f"delivered {delivered} times without an answer")
                done.append(eid)
                continue
            self._maybe_poisoned(payload)
            todo.append((eid, payload))
        try:
            for eid, payload in self.answer_pages(pipe, done, todo):
                reply, to = self.handle(payload)
                self.store_backoff.ok()
                self._send(pipe, to, reply)
                done.append(eid)
        except StoreUnavailable as exc:
            # Leave the rest unacked: answered when the database is back (at-least-once).
            answered = set(done)
            for unanswered, _ in entries:
                if unanswered not in answered:
                    self.outage_deliveries[unanswered] = self.outage_deliveries.get(unanswered, 0) + 1
            self._finish(pipe, done)
            self.stop.wait(self.store_backoff.failed(exc))
            return False
        if self.config.fault == "after_commit":
            log.error("fault point after_commit: exiting before reply and ack")
            os._exit(86)
        self._finish(pipe, done)
        return True

    def answer_pages(
        self, pipe: Batch, done: list[str], todo: list[tuple[str, bytes | None]]
    ) -> list[tuple[str, bytes | None]]:
        """Answers the batch's plain `jobs` requests (the caller's own newest jobs, no filter) with
        one statement for all of them, when there are two or more; returns the entries left, in
        stream order.

        Shells poll `jobs` more than anything else, and a statement costs the gateway about 70 µs
        of CPU before its first row (handlers.plain_pages). A page whose client has another request
        in the batch is left in its place, so a client that sends without waiting still sees its
        own requests answered in order; if the shared statement fails for any reason but an outage,
        the pages are answered one by one instead (each then gets its own answer or error).
        """
        pages: list[tuple[str, Envelope, ListRequest]] = []
        others: list[bytes] = []
        for eid, payload in todo:
            plain = plain_page(payload)
            if plain is None:
                others.append(payload or b"")
            else:
                pages.append((eid, *plain))
        pages = [p for p in pages if not any(p[1].reply_to.encode() in other for other in others)]
        if len(pages) < 2:
            return todo
        try:
            with reading(self.pool) as conn:
                replies = plain_pages(conn, [(env, body) for _, env, body in pages])
        except StoreUnavailable:
            raise
        except Exception:
            log.exception("answering %d jobs requests together failed; answering them one by one", len(pages))
            return todo
        self.store_backoff.ok()
        for (eid, env, _body), reply in zip(pages, replies, strict=True):
            self._send(pipe, env.reply_to, reply)
            done.append(eid)
        grouped = {eid for eid, _, _ in pages}
        return [(eid, payload) for eid, payload in todo if eid not in grouped]

    def _send(self, pipe: Batch, to: str | None, reply: Reply | None) -> None:
        if to is not None and reply is not None:
            send_reply(pipe, self.keys, to, reply, maxlen=self.config.reply_maxlen, ttl=self.config.reply_ttl)

    def _maybe_poisoned(self, payload: bytes | None) -> None:
        """Fault point for tests: RFARM_FAULT_POINT=poison:MARK kills the gateway on any request
        whose bytes carry MARK, every time it is delivered (a handler that always crashes)."""
        fault = self.config.fault
        if fault and fault.startswith("poison:") and payload and fault.removeprefix("poison:").encode() in payload:
            log.error("fault point poison: this request kills the gateway")
            os._exit(88)

    def _finish(self, pipe: Any, done: list[str]) -> None:
        """Replies first, then ack; an answered entry is deleted, so the stream stays short even
        when a client adds without trimming, and the stream as a whole is capped too."""
        if done:
            pipe.xack(self.keys.requests, GATEWAY_GROUP, *done)
            pipe.xdel(self.keys.requests, *done)
            for eid in done:
                self.outage_deliveries.pop(eid, None)
        if len(self.outage_deliveries) > 100_000:  # entries another gateway answered meanwhile
            self.outage_deliveries.clear()
        pipe.xtrim(self.keys.requests, maxlen=REQUESTS_MAXLEN, approximate=True)
        pipe.execute()

    def give_up(self, pipe: Any, eid: str, payload: bytes | None, reason: str) -> None:
        dead_letter(pipe, self.keys, self.keys.requests, eid, reason, payload)
        try:
            env = decode_envelope(payload or b"")
        except DecodeError as exc:
            if exc.reply_to and exc.request_id:
                send_reply(
                    pipe,
                    self.keys,
                    exc.reply_to,
                    Reply.failure(exc.request_id, ErrorCode.INTERNAL, reason),
                    maxlen=self.config.reply_maxlen,
                    ttl=self.config.reply_ttl,
                )
            return
        send_reply(
            pipe,
            self.keys,
            env.reply_to,
            Reply.failure(env.id, ErrorCode.INTERNAL, "the farm could not process this request"),
            maxlen=self.config.reply_maxlen,
            ttl=self.config.reply_ttl,
        )
        log.error("request %s dead-lettered: %s", eid, reason)

    # --- one request ---------------------------------------------------------------------------

    def handle(self, payload: bytes | None) -> tuple[Reply | None, str | None]:
        """Returns the reply and where to send it. Bad input is dead-lettered here, not raised."""
        try:
            env = decode_envelope(payload if payload is not None else b"")
        except DecodeError as exc:
            self._dead(payload, exc.message)
            if exc.reply_to and exc.request_id:
                return Reply.failure(exc.request_id, exc.code, exc.message), exc.reply_to
            return None, None
        spec = REQUEST_TYPES.get(env.type)
        if spec is None:
            self._dead(payload, f"unknown message type {env.type!r}")
            return Reply.failure(
                env.id, ErrorCode.REQUEST_UNKNOWN_TYPE, f"unknown request type {env.type!r}"
            ), env.reply_to
        model, _, needs_user, mutates = spec
        try:
            body = model.model_validate(env.body)
        except ValidationError as exc:
            return Reply.failure(env.id, ErrorCode.REQUEST_INVALID, first_error(exc, model)), env.reply_to
        try:
            return self.run_handler(env, body, needs_user, mutates), env.reply_to
        except StoreUnavailable:
            raise
        except Exception:
            log.exception("request %s (%s) failed", env.id, env.type)
            return Reply.failure(
                env.id, ErrorCode.INTERNAL, "the farm hit an internal error; it was logged"
            ), env.reply_to

    def run_handler(self, env: Envelope, body: Any, needs_user: bool, mutates: bool) -> Reply:
        handler = HANDLERS[env.type]
        digest = body_hash(env) if mutates else b""
        own_answer = mutates and env.type in RECORDS_OWN_ANSWER  # one statement: no BEGIN/COMMIT either
        after: list = []
        try:
            with (transaction if mutates and not own_answer else reading)(self.pool) as conn:  # reads: no BEGIN/COMMIT
                session: Any = _UNREAD
                if mutates and not own_answer:  # the stored answer, if any, and the caller's session: one round trip
                    stored, session = inbox.lookup_with_session(conn, env.id, env.token if needs_user else None)
                    if stored is not None:
                        return self._replay(env, stored, digest)
                ctx = Context(conn=conn, config=self.config, token=env.token, reply_to=env.reply_to, specs=self.specs)
                if own_answer:
                    ctx.answer = inbox.Answer(env.id, digest, *id_reply_parts(env.id))
                    self._fault_before_commit()  # its one statement commits as it runs
                reply, undo = self._call(ctx, handler, env, body, needs_user, session)
                if mutates:
                    if undo:
                        raise _Refused(reply)  # rolls the handler's writes back; recorded below
                    if not own_answer:
                        inbox.record(conn, env.id, digest, encode_reply(reply))
                    elif not ctx.answered:
                        raise RuntimeError(f"{env.type} was to record its answer and did not")
                if not own_answer:
                    self._fault_before_commit()
                after = ctx.after_commit
        except _Refused as refused:
            # A write refused with an error: whatever the handler wrote before refusing is rolled
            # back, and the answer is recorded on its own (a savepoint around every handler cost
            # two round trips per write; a refusal is the rare case).
            reply = refused.reply
            try:
                with transaction(self.pool) as conn:
                    inbox.record(conn, env.id, digest, encode_reply(reply))
            except Conflict:
                first = self._stored_answer(env, digest)
                if first is None:
                    raise
                return first
            return reply
        except Conflict:
            first = self._stored_answer(env, digest)
            if first is None:
                raise
            return first
        for effect in after:
            effect(self.r)
        return reply

    def _fault_before_commit(self) -> None:
        """Fault point for tests: RFARM_FAULT_POINT=before_commit kills the gateway with the
        request's effect not yet committed (inside its transaction, or before a one-statement
        write)."""
        if self.config.fault == "before_commit":
            log.error("fault point before_commit: exiting before the commit")
            os._exit(87)

    def _stored_answer(self, env: Envelope, digest: bytes) -> Reply | None:
        """The answer stored for this request id when it was answered first (here or by another
        gateway): None if there is none, so the conflict was not the inbox's."""
        with reading(self.pool) as conn:
            stored = inbox.lookup(conn, env.id)
        if stored is None:
            return None
        return self._replay(env, stored, digest)

    @staticmethod
    def _replay(env: Envelope, stored: inbox.Stored, digest: bytes) -> Reply:
        if stored.body_hash != digest:
            return Reply.failure(
                env.id, ErrorCode.REQUEST_CONFLICT, "this request id was already used for another request"
            )
        return Reply.model_validate(_unpack(stored.reply))

    def _call(
        self, ctx: Context, handler: Any, env: Envelope, body: Any, needs_user: bool, session: Any = None
    ) -> tuple[Reply, bool]:
        """The reply, and whether the handler's writes are to be undone (it refused with an error).
        ``session``: the caller's session row as read with the inbox entry (None: no such
        session), or _UNREAD when it is still to be read."""
        try:
            if needs_user:
                if not env.token:
                    raise RfarmError(ErrorCode.AUTH_REQUIRED, "not logged in: run `rfarm login USER`")
                if session is not _UNREAD:
                    ctx.user = users.session_user(session)
                elif env.type not in SELF_AUTHENTICATING:
                    ctx.user = users.authenticate(ctx.conn, env.token)
            result = handler(ctx, body)
        except KeepWrites as exc:  # an error answer whose writes stay (a failed login is counted)
            return Reply.failure(env.id, exc.code, exc.message), False
        except RfarmError as exc:
            if isinstance(exc, StoreUnavailable):
                raise
            return Reply.failure(env.id, exc.code, exc.message), True
        if isinstance(result, dict):  # already wire-ready (see gateway/wire.py)
            return Reply.success(env.id, result), False
        return Reply.success(env.id, result.model_dump(mode="json", by_alias=True)), False

    def _dead(self, payload: bytes | None, reason: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        dead_letter(pipe, self.keys, self.keys.requests, "-", reason, payload)
        pipe.execute()
        log.warning("dead-lettered a request: %s", reason)


_UNREAD = object()  # _call: the session is still to be read




class _Refused(Exception):
    """Leaves a write's transaction (rolling it back) carrying the error reply to record."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.error.message if reply.error else "refused")
        self.reply = reply


def _unpack(data: bytes) -> Any:
    return unpack(data, max_bytes=1 << 24)
