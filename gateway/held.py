"""Callers held back by a quota: a caller whose submit was refused because their quota is full
(the submits of this minute, or queued tasks with no room for any more) is refused again, for a
moment, without a statement.

A user flooding submits past their quota would otherwise cost the gateway a PostgreSQL statement
(and a recorded refusal) per request, and every other user's requests wait behind those in the one
request stream. Holding the refusal for ``hold`` seconds makes each further refused request cost
only its decoding. It is a shortcut of an answer the statement would give anyway: within a
clock minute the submits count only grows, and with no room left every job would be refused; a
task that ends, or an operator who raises the quota, lets the caller go at most ``hold`` seconds
late. (A job refused only for its own size is not held: a smaller one may still fit.) One per
request thread; keyed by a hash of the caller's token, so no token is kept in clear.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from broker_contracts.envelope import Envelope, Reply
from broker_contracts.errors import ErrorCode
from store.submit import MINUTE_FULL, NO_ROOM

HOLD_SECONDS = 1.0
MOST_HELD = 10_000


@dataclass(frozen=True)
class Held:
    until: float
    message: str


class HeldCallers:
    def __init__(self, hold: float = HOLD_SECONDS, most: int = MOST_HELD) -> None:
        self.hold = hold
        self.most = most
        self._held: dict[tuple[bytes, str], Held] = {}

    @staticmethod
    def _key(env: Envelope) -> tuple[bytes, str] | None:
        if not env.token:
            return None
        return hashlib.sha256(env.token.encode("utf-8")).digest(), env.type

    def refusal(self, env: Envelope) -> Reply | None:
        """The refusal to answer at once, if this caller is held for this request type."""
        key = self._key(env)
        held = self._held.get(key) if key is not None else None
        if held is None:
            return None
        if held.until <= time.monotonic():
            del self._held[key]  # type: ignore[arg-type]
            return None
        return Reply.failure(env.id, ErrorCode.QUOTA_EXCEEDED, held.message)

    def remember(self, env: Envelope, reply: Reply) -> None:
        """Hold the caller when a quota refused this request."""
        key = self._key(env)
        error = reply.error
        if key is None or error is None or error.code != ErrorCode.QUOTA_EXCEEDED.value:
            return
        if MINUTE_FULL not in error.message and NO_ROOM not in error.message:
            return
        if len(self._held) >= self.most:
            now = time.monotonic()
            self._held = {k: v for k, v in self._held.items() if v.until > now}
            if len(self._held) >= self.most:
                self._held.clear()
        self._held[key] = Held(time.monotonic() + self.hold, reply.error.message)
