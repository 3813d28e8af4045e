"""Reading the request stream without ever holding a huge entry.

A stream entry has no size limit of its own in Redis (a field value up to ``proto-max-bulk-len``,
512 MB by default, and any number of fields), and XREADGROUP and XCLAIM return entries whole:
redis-py reads each reply whole before the gateway sees it, so one huge entry on the request
stream would be held several times over. These two commands are sent on a connection of the
client's pool and their replies parsed here as they arrive: a field value longer than the limit
is read past in chunks and never kept, and the entry it belongs to comes back as ``Oversize`` (its
id and size), to be dead-lettered without being decoded.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import redis

_CHUNK = 64 * 1024
_MAX_LINE = 64  # a type byte and a length
_MAX_KEY = 64  # a field name


@dataclass(frozen=True)
class Oversize:
    """An entry whose fields add up to more than the limit; none of it was kept."""

    id: str
    size: int


Entry = tuple[str, dict[bytes, bytes]]


class _Wire:
    """RESP2 from a socket, read in chunks; a long value can be skipped without being held."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.pos = 0
        self.resp3 = False

    def _more(self) -> None:
        if self.pos:
            del self.buf[: self.pos]
            self.pos = 0
        try:
            chunk = self.sock.recv(_CHUNK)
        except TimeoutError as exc:
            raise redis.TimeoutError("timed out reading from redis") from exc
        except OSError as exc:
            raise redis.ConnectionError(f"error reading from redis: {exc}") from exc
        if not chunk:
            raise redis.ConnectionError("redis closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n", self.pos)
            if end >= 0:
                line = bytes(self.buf[self.pos : end])
                self.pos = end + 2
                return line
            if len(self.buf) - self.pos > _MAX_LINE:
                raise redis.ConnectionError("redis sent a protocol line too long to be one")
            self._more()

    def _header(self, *kinds: bytes) -> tuple[bytes, int]:
        """The next value's type and length; -1 for a null."""
        line = self._line()
        kind = line[:1]
        while kind == b">":  # a RESP3 push (not a reply): passed over
            self._skip_values(int(line[1:]))
            line = self._line()
            kind = line[:1]
        if kind in (b"-", b"!"):  # an error (RESP3's bulk error has its text on the next line)
            text = line[1:] if kind == b"-" else self._line()
            raise redis.ResponseError(text.decode("utf-8", "replace"))
        if kind == b"_":  # RESP3's null
            return kind, -1
        if kind not in kinds:
            raise redis.ConnectionError(f"unexpected reply {kind!r} from redis")
        return kind, int(line[1:])

    def _skip_values(self, n: int) -> None:
        for _ in range(n):
            line = self._line()
            kind, size = line[:1], int(line[1:] or 0) if line[:1] in b"*>~%|$=!" else 0
            if kind in (b"*", b">", b"~"):
                self._skip_values(size)
            elif kind in (b"%", b"|"):
                self._skip_values(2 * size)
            elif kind in (b"$", b"=", b"!") and size >= 0:
                self._skip(size + 2)

    def array(self) -> int:
        """An array's length; -1 for a null array."""
        return self._header(b"*")[1]

    def streams(self) -> int:
        """How many streams an XREADGROUP reply holds: an array of [name, entries] (RESP2) or a
        map of name to entries (RESP3, then ``resp3`` is set); -1 for none."""
        kind, n = self._header(b"*", b"%")
        self.resp3 = kind == b"%"
        return n

    def bulk(self, limit: int) -> bytes | int:
        """A bulk string, or its length when it is longer than ``limit`` (then read past, not kept)."""
        n = self._header(b"$")[1]
        if n < 0:
            return b""
        if n > limit:
            self._skip(n + 2)
            return n
        while len(self.buf) - self.pos < n + 2:
            self._more()
        value = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n + 2
        return value

    def _skip(self, n: int) -> None:
        while True:
            have = len(self.buf) - self.pos
            if have >= n:
                self.pos += n
                return
            n -= have
            self.buf.clear()
            self.pos = 0
            self._more()

    def entries(self, limit: int) -> list[Entry | Oversize]:
        """An array of stream entries ([id, [field, value, …]]), each kept only within ``limit``."""
        out: list[Entry | Oversize] = []
        for _ in range(max(0, self.array())):
            if self.array() != 2:
                raise redis.ConnectionError("a stream entry from redis is not [id, fields]")
            eid = self.bulk(_MAX_KEY)
            if isinstance(eid, int):
                raise redis.ConnectionError("a stream entry id from redis is too long")
            fields: dict[bytes, bytes] = {}
            size = 0
            for _ in range(max(0, self.array()) // 2):
                name = self.bulk(_MAX_KEY)
                value = self.bulk(limit)
                size += (name if isinstance(name, int) else len(name)) + (
                    value if isinstance(value, int) else len(value)
                )
                if size <= limit and isinstance(name, bytes) and isinstance(value, bytes):
                    fields[name] = value
            entry_id = eid.decode()
            out.append(Oversize(entry_id, size) if size > limit else (entry_id, fields))
        return out


def _socket_of(conn: Any) -> socket.socket | None:
    """The connection's socket: redis-py has no public way to it (``_get_socket()`` from 5.3,
    ``_sock`` before), and the versions pyproject.toml allows have one or the other."""
    getter = getattr(conn, "_get_socket", None)
    return getter() if callable(getter) else getattr(conn, "_sock", None)


def _run(r: redis.Redis, args: tuple[Any, ...], parse: Any) -> Any:
    pool = r.connection_pool
    try:
        conn = pool.get_connection()
    except TypeError:  # redis-py before 5.3 asks for a command name
        conn = pool.get_connection(args[0])  # type: ignore[call-arg]
    try:
        conn.send_command(*args)
        sock = _socket_of(conn)  # the reply is read here, in chunks, not by redis-py's parser
        if sock is None:
            raise redis.ConnectionError("no connection to redis")
        return parse(_Wire(sock))
    except BaseException:
        conn.disconnect()  # a reply half read is never handed to another command
        raise
    finally:
        pool.release(conn)


def xreadgroup(
    r: redis.Redis, group: str, consumer: str, stream: str, *, count: int, block_ms: int, limit: int
) -> list[Entry | Oversize]:
    """XREADGROUP … STREAMS stream >, each entry kept only within ``limit`` bytes."""

    def parse(wire: _Wire) -> list[Entry | Oversize]:
        out: list[Entry | Oversize] = []
        for _ in range(max(0, wire.streams())):
            if not wire.resp3 and wire.array() != 2:
                raise redis.ConnectionError("an XREADGROUP reply from redis is not [stream, entries]")
            wire.bulk(_MAX_KEY * 4)
            out += wire.entries(limit)
        return out

    args = ("XREADGROUP", "GROUP", group, consumer, "COUNT", count, "BLOCK", block_ms, "STREAMS", stream, ">")
    return _run(r, args, parse)  # type: ignore[no-any-return]


def xclaim(
    r: redis.Redis, stream: str, group: str, consumer: str, min_idle_ms: int, ids: list[str], *, limit: int
) -> list[Entry | Oversize]:
    """XCLAIM of ``ids``, each entry kept only within ``limit`` bytes."""
    return _run(r, ("XCLAIM", stream, group, consumer, min_idle_ms, *ids), lambda wire: wire.entries(limit))  # type: ignore[no-any-return]
