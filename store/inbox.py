"""The request inbox: each request id with the hash of its body and the reply it got."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class Stored:
    body_hash: bytes
    reply: bytes


def lookup(conn: psycopg.Connection, request_id: str) -> Stored | None:
    row = conn.execute("SELECT body_hash, reply FROM inbox WHERE request_id = %s", (request_id,)).fetchone()
    if row is None:
        return None
    return Stored(bytes(row["body_hash"]), bytes(row["reply"]))  # type: ignore[call-overload]


def record(conn: psycopg.Connection, request_id: str, body_hash: bytes, reply: bytes) -> None:
    """Raises Conflict (via store.db.transaction) if another gateway recorded it first."""
    conn.execute(
        "INSERT INTO inbox (request_id, body_hash, reply) VALUES (%s, %s, %s)",
        (request_id, body_hash, reply),
    )


def prune(conn: psycopg.Connection, older_than_seconds: float) -> int:
    cur = conn.execute("DELETE FROM inbox WHERE created_at < now() - make_interval(secs => %s)", (older_than_seconds,))
    return cur.rowcount
