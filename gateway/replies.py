"""The reply streams a gateway writes to: how long each lives, and how many one caller may have.

A reply stream is made by the first answer sent to a reply address, and any caller can pick a new
address for each request. So each gateway counts the streams it keeps alive: per login (a token
that has had a successful answer) at most ``reply_streams_per_login``, and for everyone else
(strangers logging in or registering, bad tokens) at most ``anonymous_reply_streams`` together.
A request that would make one stream too many is refused before it is answered. A stream that
only ever got errors, or answers to requests without a login (a login's own answer: the shell
reads it at once, and no notice ever follows), lives ``error_reply_ttl`` seconds instead of
``reply_ttl``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from broker_contracts.envelope import Envelope, Reply, encode_reply
from broker_contracts.errors import ErrorCode
from gateway.context import GatewayConfig


class ReplyStreams:
    """Shared by a gateway's request threads and its auth lane."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.keys = config.keys
        self.lock = threading.Lock()
        self.logins: dict[str, dict[str, float]] = {}  # token -> reply address -> expiry (monotonic)
        self.strangers: dict[str, float] = {}
        self.next_sweep = 0.0

    def refusal(self, env: Envelope) -> Reply | None:
        """The error for a request whose answer would make one reply stream too many, else None."""
        now = time.monotonic()
        with self.lock:
            self._sweep(now)
            if env.token:
                streams = self.logins.get(env.token)
                if streams is not None:
                    if _live(streams, env.reply_to, now) or len(streams) < self.config.reply_streams_per_login:
                        return None
                    return Reply.failure(
                        env.id,
                        ErrorCode.QUOTA_EXCEEDED,
                        f"this login already gets answers on {self.config.reply_streams_per_login} reply streams "
                        f"(shells); each lapses {self.config.reply_ttl} s after its last answer",
                    )
            if _live(self.strangers, env.reply_to, now) or len(self.strangers) < self.config.anonymous_reply_streams:
                return None
        return Reply.failure(
            env.id, ErrorCode.RATE_LIMITED, "too many unknown callers are waiting for answers: try again in a minute"
        )

    def send(self, out: Any, to: str, reply: Reply, token: str | None) -> None:
        """Queue the reply on ``out`` (a PackedPipeline) and count the stream it keeps alive."""
        stream = self.keys.reply(to)
        out.xadd(stream, {"m": encode_reply(reply)}, maxlen=self.config.reply_maxlen, approximate=True)
        now = time.monotonic()
        login = token if reply.ok else None  # a token is known good once it had a successful answer
        if login:
            out.expire(stream, self.config.reply_ttl)
            keep = self.config.reply_ttl
        else:  # keeps a stream alive a short while, and never shortens a longer life
            keep = min(self.config.error_reply_ttl, self.config.reply_ttl)
            out.expire(stream, keep, "NX")
            out.expire(stream, keep, "GT")
        with self.lock:
            if login:
                self.logins.setdefault(login, {})[to] = now + keep
            elif to in self.strangers or len(self.strangers) < self.config.anonymous_reply_streams:
                self.strangers[to] = max(self.strangers.get(to, 0.0), now + keep)

    def _sweep(self, now: float) -> None:
        if now < self.next_sweep:
            return
        self.next_sweep = now + 1.0
        self.strangers = {to: until for to, until in self.strangers.items() if until > now}
        logins = {}
        for token, streams in self.logins.items():
            live = {to: until for to, until in streams.items() if until > now}
            if live:
                logins[token] = live
        self.logins = logins


def _live(streams: dict[str, float], to: str, now: float) -> bool:
    return streams.get(to, 0.0) > now
