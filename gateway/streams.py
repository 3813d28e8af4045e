"""Redis helpers shared by the gateway's loops: safe group creation, replies, dead letters, backoff."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import redis

try:
    from hiredis import pack_command
except ImportError:  # pragma: no cover - redis[hiredis] brings it
    pack_command = None  # type: ignore[assignment]

from broker_contracts.codec import pack, unpack
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


class PackedPipeline:
    """Redis commands written in one go and their answers read in order: what
    ``pipeline(transaction=False)`` does for the request loop's replies and acks, at a fraction of
    its CPU. redis-py walks every argument of every command through several layers (a third of the
    gateway's CPU per request went there); here each command is packed once, by hiredis.

    As a pipeline: every answer is read, then the first error reply is raised; a lost connection
    raises and the connection is dropped, so nothing half-read is handed out again.
    """

    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self.commands: list[tuple[Any, ...]] = []

    def __len__(self) -> int:
        return len(self.commands)

    def xadd(self, name: str, fields: dict[Any, Any], *, maxlen: int, approximate: bool = True) -> None:
        args: list[Any] = ["XADD", name, "MAXLEN", "~" if approximate else "=", maxlen, "*"]
        for key, value in fields.items():
            args += (key, value)
        self.commands.append(tuple(args))

    def expire(self, name: str, seconds: int, *option: str) -> None:
        self.commands.append(("EXPIRE", name, seconds, *option))

    def xack(self, name: str, group: str, *ids: str) -> None:
        self.commands.append(("XACK", name, group, *ids))

    def xdel(self, name: str, *ids: str) -> None:
        self.commands.append(("XDEL", name, *ids))

    def xtrim(self, name: str, maxlen: int, *, approximate: bool = True) -> None:
        self.commands.append(("XTRIM", name, "MAXLEN", "~" if approximate else "=", maxlen))

    def execute(self) -> list[Any]:
        commands, self.commands = self.commands, []
        if not commands:
            return []
        pool = self.r.connection_pool
        conn = _connection(pool)
        try:
            conn.send_packed_command(_pack(conn, commands))
            answers: list[Any] = []
            for _ in commands:
                try:
                    answers.append(conn.read_response())
                except redis.ResponseError as exc:
                    answers.append(exc)
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)
        for answer in answers:
            if isinstance(answer, redis.ResponseError):
                raise answer
        return answers


def _connection(pool: redis.ConnectionPool) -> Any:
    try:
        return pool.get_connection()
    except TypeError:  # redis-py before 5.3 asks for a command name
        return pool.get_connection("PIPELINE")  # type: ignore[call-arg]


def _pack(conn: Any, commands: list[tuple[Any, ...]]) -> Any:
    if pack_command is None:  # no hiredis: redis-py packs them
        return conn.pack_commands(commands)
    return [b"".join(pack_command(c) for c in commands)]


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
    for field in ("password", "sealed_password"):  # a register/login that could not be handled
        if isinstance(body, dict) and field in body:  # (sealed: a copy of the gateway key would open it)
            body[field] = "<redacted>"
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
