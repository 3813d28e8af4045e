"""Closed-loop clients for the throughput figures: several per process, on one thread.

Each client does what a shell does on the wire (XADD an encoded Envelope to the request stream
and XREAD BLOCK its own reply stream, both in one write; decode the Reply; the next request only
after the answer). A process serves its clients from one thread with a selector, on plain sockets
and hiredis: with a thread per client the hand-offs of Python's GIL doubled the clients' CPU per
request (170 -> 340 µs here), and the clients share the machine's cores with the farm they
measure.
"""

from __future__ import annotations

import selectors
import socket
import time
from typing import Any

import hiredis
from redis.connection import parse_url

from broker_contracts.envelope import Envelope, Reply, decode_reply, encode
from broker_contracts.keys import Keys

REQUEST_MAXLEN = 100_000


class LoadClient:
    """One closed-loop client: its own connection and reply stream, one request in flight."""

    def __init__(self, redis_url: str, prefix: str, requests: str | None, type_: str, body: dict[str, Any],
                 token: str | None, client_id: str) -> None:
        self.sock = _connect(redis_url)
        self.reader = hiredis.Reader()
        keys = Keys(prefix)
        self.requests = requests or keys.requests
        self.client_id = client_id
        self.reply_key = keys.reply(client_id)
        self.type, self.body, self.token = type_, body, token
        self.last = b"0-0"
        self.request_id = ""
        self.unanswered = 0  # commands sent whose answers are still to be read

    def send(self) -> None:
        env = Envelope.new(self.type, self.body, reply_to=self.client_id, token=self.token)
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

    def close(self) -> None:
        self.sock.close()


def run_clients(clients: list[LoadClient], go_at: float, end: float) -> tuple[int, int]:
    """Keeps every client busy until ``end``; the answers counted, ok and not."""
    done = failed = 0
    sel = selectors.DefaultSelector()
    for c in clients:
        sel.register(c.sock, selectors.EVENT_READ, c)
    time.sleep(max(0.0, go_at - time.time()))
    for c in clients:
        c.send()
    while True:
        now = time.time()
        if now >= end:
            break
        for key, _ in sel.select(timeout=min(1.0, end - now)):
            client: LoadClient = key.data
            reply = client.readable()
            if reply is None:
                continue
            if time.time() <= end:
                if reply.ok:
                    done += 1
                else:
                    failed += 1
            client.send()
    sel.close()
    return done, failed


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
