"""One request, Envelope to Reply: decode once, authenticate once, idempotency, handler, record, reply.

How each step runs for a request type is its row in the registry (broker_contracts.messages
.REQUEST_TYPES); the fast paths it names are explained in docs/PERFORMANCE.md:

- a read: one connection, no transaction block; the caller's session is one statement, or part
  of the handler's own (``session_in_statement``);
- a write in a transaction block (``in_transaction``): its stored answer (if it was answered
  before) and the caller's session are read by one statement; the handler's answer is recorded
  before the commit; a refusal rolls its writes back and is recorded on its own;
- a write that records its own answer (``records_own_answer``): one statement makes the effect,
  checks the session and records the answer, without a transaction block;
- several plain requests of a type ``answers_together`` in one batch: one statement answers them.

Handlers (gateway/handlers.py) return what they decide (a reply body, or an Outcome with the Redis
writes to make after the commit); this module runs those writes once the commit is done.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeGuard

import psycopg
import redis
from psycopg_pool import ConnectionPool
from pydantic import ValidationError

from broker_contracts.codec import pack, unpack
from broker_contracts.envelope import Envelope, Reply, decode_envelope, encode_reply, first_error
from broker_contracts.errors import DecodeError, ErrorCode, RfarmError
from broker_contracts.messages import REQUEST_TYPES, RequestType
from gateway import faults, handlers
from gateway.context import Context, Effect, GatewayConfig, KeepWrites, Outcome, Specs
from gateway.held import HeldCallers
from gateway.sealing import GatewayKey
from gateway.streams import dead_letter
from gateway.wire import id_reply_parts
from store import inbox, users
from store.db import Conflict, StoreUnavailable, reading, transaction
from store.users import User

log = logging.getLogger("rfarm.gateway")

# request types whose quota refusal holds the caller back a moment (gateway/held.py)
HELD_BY_QUOTA = frozenset({"job.submit"})

# request types whose body carries a password sealed to the farm's key
SEALED_PASSWORDS = frozenset({"auth.login", "auth.register"})

_MISSING = handlers.missing_handlers()
if _MISSING:  # a request type the gateway cannot answer fails here, not when it is first asked
    raise RuntimeError("the request registry and the gateway's handlers disagree: " + "; ".join(_MISSING))


@dataclass(frozen=True)
class Request:
    """A decoded request: its envelope, its registry row and its validated body."""

    env: Envelope
    row: RequestType
    body: Any


@dataclass(frozen=True)
class Answered:
    """A request answered while decoding it: the reply, and where to (None: nowhere to answer);
    ``dead``: why its payload is to be dead-lettered when it is answered, if it is."""

    reply: Reply | None
    to: str | None
    dead: str | None = None
    payload: bytes | None = None


@dataclass(frozen=True)
class Decision:
    """The handler's reply and effects; ``undo``: it refused, so its writes are to be rolled back."""

    reply: Reply
    effects: tuple[Effect, ...] = ()
    undo: bool = False
    recorded: bool = False


def body_hash(envelope: Envelope) -> bytes:
    """What makes a request the same request: its type, token and body."""
    return hashlib.sha256(pack([envelope.type, envelope.token, envelope.body])).digest()


class Pipeline:
    def __init__(
        self, r: redis.Redis, pool: ConnectionPool, config: GatewayConfig, key: GatewayKey | None = None
    ) -> None:
        self.r = r
        self.pool = pool
        self.config = config
        self.specs = Specs()
        self.key = key if key is not None else GatewayKey(pool)
        self.held = HeldCallers()

    def answer(self, decoded: list[tuple[str, Request | Answered]]) -> Iterator[tuple[str, Reply | None, str | None]]:
        """(entry id, reply, where to) for each of a batch's decoded payloads, as each is answered:
        those answered together first, then the rest in stream order. Raises StoreUnavailable when
        the database is away (the entries not yet answered are to stay unacked)."""
        together, rest = self.answer_together(decoded)
        yield from together
        for eid, request in rest:
            yield eid, *self.respond(request)

    def handle(self, payload: bytes | None) -> tuple[Reply | None, str | None]:
        """One payload's reply and where to send it (None: nowhere)."""
        return self.respond(self.decode(payload))

    # --- 1. decode ---------------------------------------------------------------------------

    def decode(self, payload: bytes | None) -> Request | Answered:
        """The envelope, its row and its body, or the answer to a request that is not one (bad
        input is dead-lettered when it is answered, not raised)."""
        try:
            env = decode_envelope(payload if payload is not None else b"")
        except DecodeError as exc:
            if exc.reply_to and exc.request_id:
                failed = Reply.failure(exc.request_id, exc.code, exc.message)
                return Answered(failed, exc.reply_to, exc.message, payload)
            return Answered(None, None, exc.message, payload)
        row = REQUEST_TYPES.get(env.type)
        if row is None:
            failure = Reply.failure(env.id, ErrorCode.REQUEST_UNKNOWN_TYPE, f"unknown request type {env.type!r}")
            return Answered(failure, env.reply_to, f"unknown message type {env.type!r}", payload)
        try:
            body = row.body.model_validate(env.body)
        except ValidationError as exc:
            return Answered(Reply.failure(env.id, ErrorCode.REQUEST_INVALID, first_error(exc, row.body)), env.reply_to)
        if env.token:  # sealed for this request (broker_contracts.sealing): opened here, once
            try:
                token = self.key.token(env.token, env.id, env.type, env.body, env.reply_to)
            except StoreUnavailable:
                raise
            except RfarmError as exc:
                return Answered(Reply.failure(env.id, exc.code, exc.message), env.reply_to)
            env = env.model_copy(update={"token": token})
        elif row.name in SEALED_PASSWORDS:
            self.key.private  # noqa: B018 - read before the handler's transaction takes a connection
        return Request(env, row, body)

    def dead(self, payload: bytes | None, reason: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        dead_letter(pipe, self.config.keys, self.config.keys.requests, "-", reason, payload)
        pipe.execute()
        log.warning("dead-lettered a request: %s", reason)

    def answer_together(
        self, decoded: list[tuple[str, Request | Answered]]
    ) -> tuple[list[tuple[str, Reply, str]], list[tuple[str, Request | Answered]]]:
        """Answers the batch's plain requests of a type answered together (the caller's own newest
        jobs, no filter) with one statement per type, when there are two or more; returns those
        replies and the entries left, in stream order.

        Shells poll `jobs` more than anything else, and a statement costs the gateway about as much
        CPU as the rest of a request (handlers.plain_pages). A request whose client has another
        request in the batch is left in its place, so a client that sends without waiting still
        sees its own requests answered in order; if the shared statement fails for any reason but
        an outage, the requests are answered one by one instead (each gets its own answer or error).
        """
        groups: dict[str, list[tuple[str, Request]]] = {}
        others: set[str] = set()
        for eid, request in decoded:
            if self.together(request):
                groups.setdefault(request.row.name, []).append((eid, request))
                continue
            to = request.env.reply_to if isinstance(request, Request) else request.to
            if to is not None:
                others.add(to)
        answered: list[tuple[str, Reply, str]] = []
        for name, group in groups.items():
            plain = [(eid, request) for eid, request in group if request.env.reply_to not in others]
            if len(plain) < 2:
                continue
            try:
                with reading(self.pool) as conn:
                    replies = handlers.TOGETHER[name].answer(conn, [(r.env, r.body) for _, r in plain])
            except StoreUnavailable:
                raise
            except Exception:
                log.exception("answering %d %s requests together failed; answering them one by one", len(plain), name)
                continue
            answered += [(eid, reply, r.env.reply_to) for (eid, r), reply in zip(plain, replies, strict=True)]
        grouped = {eid for eid, _, _ in answered}
        return answered, [(eid, request) for eid, request in decoded if eid not in grouped]

    @staticmethod
    def together(request: Request | Answered) -> TypeGuard[Request]:
        """A request of a type answered together, plain enough to be (the statement's test)."""
        return (
            isinstance(request, Request)
            and request.row.answers_together
            and handlers.TOGETHER[request.row.name].plain(request.env, request.body)
        )

    # --- 2. to 5. one request: authenticate, idempotency, handler, record ----------------------

    def respond(self, request: Request | Answered) -> tuple[Reply | None, str | None]:
        if isinstance(request, Answered):
            if request.dead is not None:
                self.dead(request.payload, request.dead)
            return request.reply, request.to
        env = request.env
        holds = env.type in HELD_BY_QUOTA
        if holds and (refusal := self.held.refusal(env)) is not None:
            return refusal, env.reply_to
        try:
            reply = self.run(request)
            if holds:
                self.held.remember(env, reply)
            return reply, env.reply_to
        except StoreUnavailable:
            raise
        except Exception:
            log.exception("request %s (%s) failed", env.id, env.type)
            failure = Reply.failure(env.id, ErrorCode.INTERNAL, "the farm hit an internal error; it was logged")
            return failure, env.reply_to

    def run(self, request: Request) -> Reply:
        """The reply, its effect committed (or, for a repeated request id, the first answer)."""
        row, env = request.row, request.env
        digest = body_hash(env) if row.writes else b""
        try:
            if row.in_transaction:
                decision = self.write_in_transaction(request, digest)
            elif row.records_own_answer:
                decision = self.write_in_one_statement(request, digest)
            else:
                with reading(self.pool) as conn:  # reads: no BEGIN/COMMIT
                    decision = self.decide(conn, request)
        except _Refused as refused:
            return self.record_refusal(request, digest, refused.reply)
        except Conflict:  # the request id was answered first, here or by another gateway
            first = self.first_answer(env, digest)
            if first is None:
                raise
            return first
        try:
            for effect in decision.effects:
                effect(self.r)
        except RfarmError as exc:  # a read's effect may refuse (a watch over its cap): nothing was recorded
            if row.writes:
                raise
            return Reply.failure(env.id, exc.code, exc.message)
        return decision.reply

    def write_in_transaction(self, request: Request, digest: bytes) -> Decision:
        env, row = request.env, request.row
        with transaction(self.pool) as conn:
            # idempotency: the stored answer, if any, and the caller's session: one round trip
            stored, session = inbox.lookup_with_session(conn, env.id, env.token if row.needs_user else None)
            if stored is not None:
                return Decision(self.replay(env, stored, digest))
            decision = self.decide(conn, request, session)
            if decision.undo:
                raise _Refused(decision.reply)  # rolls the handler's writes back; recorded on its own
            inbox.record(conn, env.id, digest, encode_reply(decision.reply))
            faults.trip(self.config.fault, "before_commit")
        return decision

    def write_in_one_statement(self, request: Request, digest: bytes) -> Decision:
        env = request.env
        answer = inbox.Answer(env.id, digest, *id_reply_parts(env.id))
        with reading(self.pool) as conn:  # no BEGIN/COMMIT: its one statement commits as it runs
            faults.trip(self.config.fault, "before_commit")
            decision = self.decide(conn, request, answer=answer)
        if decision.undo:  # refused before its statement
            raise _Refused(decision.reply)
        if not decision.recorded:
            raise RuntimeError(f"{env.type} was to record its answer and did not")
        return decision

    def decide(
        self,
        conn: psycopg.Connection,
        request: Request,
        session: dict[str, Any] | None = None,
        *,
        answer: inbox.Answer | None = None,
    ) -> Decision:
        """Authenticate the caller (once), then the handler; an error it raises is its reply."""
        env = request.env
        try:
            ctx = Context(
                conn=conn,
                config=self.config,
                token=env.token,
                reply_to=env.reply_to,
                user=self.caller(conn, request, session),
                answer=answer,
                specs=self.specs,
                key=self.key,
            )
            result = handlers.HANDLERS[env.type](ctx, request.body)
        except KeepWrites as exc:  # an error answer whose writes stay (a failed login is counted)
            return Decision(Reply.failure(env.id, exc.code, exc.message))
        except StoreUnavailable:
            raise
        except RfarmError as exc:
            return Decision(Reply.failure(env.id, exc.code, exc.message), undo=True)
        outcome = result if isinstance(result, Outcome) else Outcome(result)
        body = outcome.body
        if not isinstance(body, dict):  # a dict is already wire-ready (see gateway/wire.py)
            body = body.model_dump(mode="json", by_alias=True)
        return Decision(Reply.success(env.id, body), outcome.after_commit, recorded=outcome.recorded)

    @staticmethod
    def caller(conn: psycopg.Connection, request: Request, session: dict[str, Any] | None) -> User | None:
        """The caller, authenticated the one way the row says; None when no user is needed, or
        when the handler's own statement checks the session."""
        row, token = request.row, request.env.token
        if not row.needs_user:
            return None
        if not token:
            raise RfarmError(ErrorCode.AUTH_REQUIRED, "not logged in: run `rfarm login USER`")
        if row.in_transaction:  # read with the inbox entry
            return users.session_user(session)
        if row.session_in_statement:
            return None
        return users.authenticate(conn, token)

    # --- 5. record (a refusal, or the first answer to a repeated id) -------------------------

    def record_refusal(self, request: Request, digest: bytes, reply: Reply) -> Reply:
        """A write refused with an error: whatever the handler wrote before refusing was rolled
        back, and the answer is recorded on its own (a savepoint around every handler would cost two
        round trips per write; a refusal is the rare case)."""
        env = request.env
        try:
            with transaction(self.pool) as conn:
                inbox.record(conn, env.id, digest, encode_reply(reply))
        except Conflict:
            first = self.first_answer(env, digest)
            if first is None:
                raise
            return first
        return reply

    def first_answer(self, env: Envelope, digest: bytes) -> Reply | None:
        """The answer stored for this request id when it was answered first (here or by another
        gateway): None if there is none, so the conflict was not the inbox's."""
        with reading(self.pool) as conn:
            stored = inbox.lookup(conn, env.id)
        if stored is None:
            return None
        return self.replay(env, stored, digest)

    @staticmethod
    def replay(env: Envelope, stored: inbox.Stored, digest: bytes) -> Reply:
        if stored.body_hash != digest:
            return Reply.failure(
                env.id, ErrorCode.REQUEST_CONFLICT, "this request id was already used for another request"
            )
        return Reply.model_validate(unpack(stored.reply, max_bytes=1 << 24))


class _Refused(Exception):
    """Leaves a write's transaction (rolling it back) carrying the error reply to record."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.error.message if reply.error else "refused")
        self.reply = reply
