"""The request/reply wire as a shell speaks it, and a bare echo server for the floor.

``Caller`` does what ``shell.client.Client`` does on the wire (XADD an encoded Envelope to the
request stream and XREAD BLOCK the caller's own reply stream, in one write; decode the Reply)
without its retry and error translation, and with less CPU (see Caller), so the echo floor and
the gateway are measured through the same client code, one caller or many (benchmarks/load.py).

``python -m benchmarks.wire URL PREFIX STREAM [page]`` runs the echo server: XREADGROUP a batch, then
in one pipeline XADD a reply to the reply stream each request names (with the reply stream's cap and
expiry, as the gateway does) and XACK. No decoding beyond reading ``reply_to``, no database. With
``page`` every reply carries a body shaped like a page of 50 jobs, to show what the size of a
``jobs`` reply costs by itself.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import sys
import time
from typing import Any

import hiredis
import msgpack
import redis
from nacl.public import PrivateKey, PublicKey
from redis.connection import parse_url

from broker_contracts.envelope import Envelope, Reply, decode_reply, encode, encode_reply
from broker_contracts.keys import Keys
from broker_contracts.sealing import key_text, public_key, seal, unseal

REQUEST_MAXLEN = 100_000
ECHO_GROUP = "echo"


class NoReply(Exception):
    pass


class Caller:
    """One client of the farm on a connection of its own, one request in flight at a time.

    The request and the first blocking read of its reply go out in one write, on a plain socket
    parsed by hiredis, without redis-py's client objects: the same bytes as the shell sends, at a
    fraction of the client CPU. The benchmark's clients share the machine's cores with the farm
    they measure, so what they burn is taken from it. ``call`` waits for the answer; the
    throughput clients (benchmarks/load.py) use ``send`` and ``readable`` under a selector.
    """

    def __init__(self, redis_url: str, prefix: str, *, requests: str | None = None) -> None:
        self.sock = _connect(redis_url)
        self.reader = hiredis.Reader()
        self.redis_url = redis_url
        keys = Keys(prefix)
        self.keys = keys
        self._farm_key: PublicKey | None = None
        self.requests = requests or keys.requests
        self.client_id = secrets.token_hex(16)
        self.reply_key = keys.reply(self.client_id)
        self.last = b"0-0"
        self.request_id = ""
        self.unanswered = 0  # commands sent whose answers are still to be read

    def close(self) -> None:
        self.sock.close()

    def farm_key(self) -> PublicKey:
        """The key the farm's gateways announce (waited for while a gateway starts): as the shell
        does, the token of every request is sealed to it, a password too."""
        if self._farm_key is None:
            deadline = time.monotonic() + 30
            with redis.Redis.from_url(self.redis_url) as r:
                while (raw := r.get(self.keys.gateway_key)) is None:
                    if time.monotonic() >= deadline:
                        raise NoReply("no gateway announced the farm's key within 30 s")
                    time.sleep(0.1)
            self._farm_key = public_key(raw.decode())
        return self._farm_key

    def register(self, username: str, password: str) -> None:
        self.ok("auth.register", {"username": username, "sealed_password": seal(self.farm_key(), password.encode())})

    def login(self, username: str, password: str) -> str:
        """The session token, opened with this login's own one-off key."""
        answer = PrivateKey.generate()
        body = {"username": username, "sealed_password": seal(self.farm_key(), password.encode()),
                "answer_key": key_text(answer.public_key)}
        return unseal(answer, self.ok("auth.login", body)["sealed_token"]).decode()

    def send(self, type_: str, body: dict[str, Any], token: str | None = None) -> None:
        key = self.farm_key() if token else None
        env = Envelope.new(type_, body, reply_to=self.client_id, token=token, farm_key=key)
        self.request_id = env.id
        self.sock.sendall(
            hiredis.pack_command(("XADD", self.requests, "MAXLEN", "~", REQUEST_MAXLEN, "*", "m", encode(env)))
            + self._read_command()
        )
        self.unanswered = 2

    def _read_command(self) -> bytes:
        return hiredis.pack_command(("XREAD", "COUNT", 10, "BLOCK", 1000, "STREAMS", self.reply_key, self.last))

    def readable(self) -> Reply | None:
        """Reads what arrived; the reply to the request in flight once it is here."""
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("redis closed the connection")
        self.reader.feed(data)
        answer: Reply | None = None
        while (got := self.reader.gets()) is not False:
            self.unanswered -= 1
            if isinstance(got, hiredis.ReplyError):
                raise RuntimeError(f"redis refused a command: {got}")
            if self.unanswered > 0:  # the XADD's entry id
                continue
            for _stream, entries in got or []:
                for eid, fields in entries:
                    self.last = eid
                    reply = decode_reply(dict(zip(fields[::2], fields[1::2], strict=True))[b"m"])
                    if isinstance(reply, Reply) and reply.re == self.request_id:
                        answer = reply
            if answer is None:  # not here yet: read on
                self.sock.sendall(self._read_command())
                self.unanswered = 1
        return answer

    def call(self, type_: str, body: dict[str, Any], token: str | None = None, *, timeout: float = 30.0) -> Reply:
        self.send(type_, body, token)
        deadline = time.monotonic() + timeout
        while (reply := self.readable()) is None:
            if time.monotonic() >= deadline:
                self.close()  # a read is still outstanding: this connection is out of step now
                raise NoReply(f"no reply to {type_} within {timeout:g} s")
        return reply

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



def _connect(redis_url: str) -> socket.socket:
    opts = parse_url(redis_url)
    if "path" in opts:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(opts["path"])
    else:
        sock = socket.create_connection((opts.get("host", "127.0.0.1"), opts.get("port", 6379)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    setup: list[tuple[Any, ...]] = []
    if opts.get("password"):
        setup.append(("AUTH", *([opts["username"]] if opts.get("username") else []), opts["password"]))
    if opts.get("db"):
        setup.append(("SELECT", opts["db"]))
    if setup:
        sock.sendall(b"".join(hiredis.pack_command(c) for c in setup))
        reader = hiredis.Reader()
        answers = 0
        while answers < len(setup):
            reader.feed(sock.recv(4096))
            while (got := reader.gets()) is not False:
                if isinstance(got, hiredis.ReplyError):
                    raise RuntimeError(f"redis refused {setup[answers][0]}: {got}")
                answers += 1
    return sock

if __name__ == "__main__":
    url, pfx, name = sys.argv[1], sys.argv[2], sys.argv[3]
    with contextlib.suppress(KeyboardInterrupt):
        echo_forever(url, pfx, name, page_body() if sys.argv[4:] == ["page"] else None)
