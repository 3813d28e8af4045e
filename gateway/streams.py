"""Redis helpers shared by the gateway's loops: safe group creation, replies, dead letters, backoff."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import redis

from broker_contracts.codec import pack, unpack
from broker_contracts.envelope import Reply, encode_reply
from broker_contracts.errors import DecodeError
from broker_contracts.keys import Keys

log = logging.getLogger("rfarm.gateway")

DEAD_MAXLEN = 10_000
WORK_MAXLEN = 20_000
EVENTS_MAXLEN = 200_000


def ensure_group(r: redis.Redis, stream: str, group: str) -> None:
    """Create the group reading from the start of the stream; an existing group is fine.

    Starting at 0, not $: after Redis restarts empty, entries published before the group came
    back must still be delivered.
    """
    try:
        r.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def no_group(exc: redis.RedisError) -> bool:
    """The stream or its group is gone (Redis restarted empty, or the key was deleted): the loops
    create the group once at start and again only after this or a lost connection, not before
    every read (a round trip per batch)."""
    return isinstance(exc, redis.ResponseError) and str(exc).startswith("NOGROUP")


def send_reply(pipe: Any, keys: Keys, client: str, reply: Reply, *, maxlen: int, ttl: int) -> None:
    stream = keys.reply(client)
    pipe.xadd(stream, {"m": encode_reply(reply)}, maxlen=maxlen, approximate=True)
    pipe.expire(stream, ttl)


def redact(payload: bytes) -> bytes:
    """The payload as kept for operators: a token or password it carries is replaced, never kept in clear."""
    try:  # (msgpack 1.2's unpackb refuses max_buffer_size: a TypeError here kept every token in clear)
        raw = unpack(payload, max_bytes=len(payload))
    except DecodeError:
        return _scrub(payload)
    if not isinstance(raw, dict):
        return payload
    changed = False
    if raw.get("token"):
        raw["token"] = "<redacted>"
        changed = True
    body = raw.get("body")
    if isinstance(body, dict) and "password" in body:  # a register/login that could not be handled
        body["password"] = "<redacted>"
        changed = True
    return pack(raw) if changed else payload


# In bytes that do not decode, any long run of token characters is replaced (tokens are 43 url-safe
# characters), except the request id (a uuid) and the reply address (32 hex digits), kept for operators.
_TOKEN_LIKE = re.compile(rb"[A-Za-z0-9_\-]{20,}")
_KEEP = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")


def _scrub(payload: bytes) -> bytes:
    at = payload.find(b"password")
    if at >= 0:  # whatever follows a password field is dropped: a password has no shape to recognise
        payload = payload[: at + 8] + b"<redacted>"
    return _TOKEN_LIKE.sub(lambda m: m.group() if _KEEP.fullmatch(m.group()) else b"<redacted>", payload)


def dead_letter(pipe: Any, keys: Keys, source: str, entry_id: str, reason: str, payload: bytes | None) -> None:
    fields: dict[str, Any] = {"m": pack({"source": source, "id": entry_id, "reason": reason, "at": time.time()})}
    if payload is not None:
        fields["payload"] = redact(payload[:65536])
    pipe.xadd(keys.dead, fields, maxlen=DEAD_MAXLEN, approximate=True)


class Backoff:
    """Bounded retry delays (0.2 s doubling to 5 s) that log once per outage, not per attempt."""

    def __init__(self, what: str, *, start: float = 0.2, cap: float = 5.0) -> None:
        self.what = what
        self.start = start
        self.cap = cap
        self.delay = 0.0
        self.failing_since: float | None = None

    def failed(self, exc: BaseException) -> float:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            log.warning("%s unavailable (%s); retrying with backoff", self.what, type(exc).__name__)
        self.delay = self.start if self.delay == 0 else min(self.cap, self.delay * 2)
        return self.delay

    def ok(self) -> None:
        if self.failing_since is not None:
            log.warning("%s is back after %.1f s", self.what, time.monotonic() - self.failing_since)
        self.failing_since = None
        self.delay = 0.0


def entry_id(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
