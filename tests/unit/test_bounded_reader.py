"""gateway/bounded.py's reply parser on hand-written RESP: a value over the limit is passed over
and its entry reported by size; pushes are skipped; RESP2 and RESP3 shapes alike."""

from __future__ import annotations

import socket
import threading

import pytest
import redis

from gateway.bounded import Oversize, _Wire


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def entry(eid: bytes, *fields: bytes) -> bytes:
    return b"*2\r\n" + bulk(eid) + b"*%d\r\n" % len(fields) + b"".join(bulk(f) for f in fields)


def wire_of(data: bytes) -> tuple[_Wire, threading.Thread]:
    ours, theirs = socket.socketpair()

    def send() -> None:
        theirs.sendall(data)
        theirs.close()

    sender = threading.Thread(target=send)  # the socket buffer is smaller than a big value
    sender.start()
    return _Wire(ours), sender


def parse_xreadgroup(data: bytes, limit: int) -> list:
    wire, sender = wire_of(data)
    out: list = []
    try:
        for _ in range(max(0, wire.streams())):
            if not wire.resp3:
                assert wire.array() == 2
            wire.bulk(256)
            out += wire.entries(limit)
    finally:
        sender.join()
        wire.sock.close()
    return out


def test_resp2_entries_with_one_over_the_limit() -> None:
    big = b"x" * 3_000_000
    data = (
        b"*1\r\n*2\r\n"
        + bulk(b"rf:req")
        + b"*3\r\n"
        + entry(b"1-0", b"m", b"small")
        + entry(b"2-0", b"m", big)
        + entry(b"3-0", b"m", b"after")
    )
    got = parse_xreadgroup(data, 1024)
    assert got == [("1-0", {b"m": b"small"}), Oversize("2-0", 1 + len(big)), ("3-0", {b"m": b"after"})]


def test_resp3_map_after_a_push_and_many_small_fields_add_up() -> None:
    push = b">2\r\n" + bulk(b"invalidate") + b"*1\r\n" + bulk(b"k")
    fields = [b"f", b"y" * 600] * 4  # each under the limit, together over it
    data = push + b"%1\r\n" + bulk(b"rf:req") + b"*2\r\n" + entry(b"1-0", *fields) + entry(b"2-0", b"m", b"ok")
    got = parse_xreadgroup(data, 1024)
    assert got == [Oversize("1-0", 4 * 601), ("2-0", {b"m": b"ok"})]


def test_nothing_and_errors() -> None:
    assert parse_xreadgroup(b"*-1\r\n", 1024) == []
    assert parse_xreadgroup(b"_\r\n", 1024) == []
    with pytest.raises(redis.ResponseError, match="NOGROUP"):
        parse_xreadgroup(b"-NOGROUP No such key\r\n", 1024)
    with pytest.raises(redis.ConnectionError):
        parse_xreadgroup(b"*1\r\n*2\r\n" + bulk(b"rf:req") + b"*1\r\n*2\r\n", 1024)  # cut short
