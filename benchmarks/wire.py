"""The request/reply wire as a shell speaks it, and a bare echo server for the floor.

``Caller`` does what ``shell.client.Client`` does on the wire (XADD an encoded Envelope to the
request stream and XREAD BLOCK the caller's own reply stream, pipelined in one round trip; decode
the Reply) without its retry and error translation, and with less CPU (see Caller.__init__), so
the echo floor and the gateway are measured through the same client code.

``python -m benchmarks.wire URL PREFIX STREAM [page]`` runs the echo server: XREADGROUP a batch, then
in one pipeline XADD a reply to the reply stream each request names (with the reply stream's cap and
expiry, as the gateway does) and XACK. No decoding beyond reading ``reply_to``, no database. With
``page`` every reply carries a body shaped like a page of 50 jobs, to show what the size of a
``jobs`` reply costs by itself.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
import time
from typing import Any

import msgpack
import redis

from broker_contracts.envelope import Envelope, Reply, decode_reply, encode, encode_reply
from broker_contracts.keys import Keys

REQUEST_MAXLEN = 100_000
ECHO_GROUP = "echo"


class NoReply(Exception):
    pass


class Caller:
    def __init__(self, redis_url: str, prefix: str, *, requests: str | None = None) -> None:
        self.r = redis.Redis.from_url(redis_url)
        # The request and the first blocking read of its reply go out together, on a connection of
        # the caller's own, without redis-py's pipeline object: the same bytes as the shell sends,
        # at half the client CPU (100 -> 52 µs a call here). The clients share the machine's cores
        # with the farm they measure, so what they burn is taken from it.
        self.conn = self.r.connection_pool.make_connection()
        self.keys = Keys(prefix)
        self.requests = requests or self.keys.requests
        self.client_id = secrets.token_hex(16)
        self.reply_key = self.keys.reply(self.client_id)
        self.last = "0-0"

    def close(self) -> None:
        self.conn.disconnect()
        self.r.close()

    def call(self, type_: str, body: dict[str, Any], token: str | None = None, *, timeout: float = 30.0) -> Reply:
        env = Envelope.new(type_, body, reply_to=self.client_id, token=token)
        conn = self.conn
        conn.send_packed_command(conn.pack_commands([
            ("XADD", self.requests, "MAXLEN", "~", REQUEST_MAXLEN, "*", "m", encode(env)),
            ("XREAD", "COUNT", 10, "BLOCK", 1000, "STREAMS", self.reply_key, self.last),
        ]))
        try:
            conn.read_response()  # the request's entry id (or the error that refused it)
        finally:
            got = conn.read_response()  # read either way: the connection stays in step
        deadline = time.monotonic() + timeout
        while True:
            for _stream, entries in (got.items() if isinstance(got, dict) else got or []):  # RESP3 or RESP2
                for eid, fields in entries:
                    self.last = eid.decode()
                    reply = decode_reply(dict(zip(fields[::2], fields[1::2], strict=True))[b"m"])
                    if isinstance(reply, Reply) and reply.re == env.id:
                        return reply
            if time.monotonic() >= deadline:
                raise NoReply(f"no reply to {type_} within {timeout:g} s")
            conn.send_command("XREAD", "COUNT", 10, "BLOCK", 1000, "STREAMS", self.reply_key, self.last)
            got = conn.read_response()

    def ok(self, type_: str, body: dict[str, Any], token: str | None = None) -> Any:
        reply = self.call(type_, body, token)
        if not reply.ok:
            raise RuntimeError(f"{type_} failed: {reply.error}")
        return reply.body


def page_body(rows: int = 50) -> dict[str, Any]:
    """A reply body the size and shape of a page of `rows` jobs as the gateway sends it: a table
    (broker_contracts/tables.py), about 5.6 KB for 50."""
    columns = ["id", "name", "owner", "status", "paused", "priority", "renderer", "pool", "frames", "frames_total",
               "frames_done", "tasks_total", "created_at", "updated_at", "reason"]
    row = ["seeded-1", "bench", "succeeded", False, 50, "noop", "bench-idle", "1", 1, 1, 1,
           "2026-11-28T09:48:59.781937Z", "2026-11-28T09:48:59.781937Z", None]
    return {"columns": columns, "jobs": [[1000 - i, *row] for i in range(rows)]}


def echo_forever(redis_url: str, prefix: str, stream: str, body: dict[str, Any] | None = None) -> None:
    r = redis.Redis.from_url(redis_url)
    keys = Keys(prefix)
    consumer = f"echo-{secrets.token_hex(3)}"
    try:
        r.xgroup_create(stream, ECHO_GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    while True:
        got = r.xreadgroup(ECHO_GROUP, consumer, {stream: ">"}, count=64, block=1000)
        if not got:
            continue
        pipe = r.pipeline(transaction=False)
        ids = []
        for _stream, entries in got:
            for eid, fields in entries:
                raw = msgpack.unpackb(fields[b"m"], raw=False)
                reply = Reply.success(raw["id"], body or {"echo": True})
                out = keys.reply(raw["reply_to"])
                pipe.xadd(out, {"m": encode_reply(reply)}, maxlen=500, approximate=True)
                pipe.expire(out, 300)
                ids.append(eid)
        pipe.xack(stream, ECHO_GROUP, *ids)
        pipe.execute()


if __name__ == "__main__":
    url, pfx, name = sys.argv[1], sys.argv[2], sys.argv[3]
    with contextlib.suppress(KeyboardInterrupt):
        echo_forever(url, pfx, name, page_body() if sys.argv[4:] == ["page"] else None)
