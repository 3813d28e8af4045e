"""The request inbox: each request id with the hash of its body and the reply it got."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from store.users import SESSION_COLUMNS, SESSION_FROM, token_hash


@dataclass(frozen=True)
class Answer:
    """For a write that records its own answer in the statement that makes its effect (one
    statement, so no transaction block: no BEGIN and no COMMIT). Its success reply is
    ``{"id": N}`` for the N the statement makes: ``head`` and ``tail`` are the reply's bytes around
    N's eight (gateway.wire.id_reply_parts)."""

    request_id: str
    body_hash: bytes
    head: bytes
    tail: bytes

    def sql(self, source: str) -> str:
        """An INSERT recording the answer for the ``id`` of the row ``source`` (a CTE) makes."""
        return (
            "INSERT INTO inbox (request_id, body_hash, reply) SELECT %(answer_id)s, %(answer_hash)s, "
            f"%(answer_head)s || int8send(id) || %(answer_tail)s FROM {source}"
        )

    def params(self) -> dict[str, Any]:
        return {"answer_id": self.request_id, "answer_hash": self.body_hash, "answer_head": self.head,
                "answer_tail": self.tail}


@dataclass(frozen=True)
class Stored:
    body_hash: bytes
    reply: bytes


def lookup(conn: psycopg.Connection, request_id: str) -> Stored | None:
    row = conn.execute("SELECT body_hash, reply FROM inbox WHERE request_id = %s", (request_id,)).fetchone()
    if row is None:
        return None
    return Stored(bytes(row["body_hash"]), bytes(row["reply"]))  # type: ignore[call-overload]


def lookup_with_session(
    conn: psycopg.Connection, request_id: str, token: str | None
) -> tuple[Stored | None, dict[str, Any] | None]:
    """The stored answer to a request id and the session row of ``token`` (users.SESSION_COLUMNS;
    None when there is no such session), in one round trip: a write that needs a user asked for
    the two one after the other."""
    row = conn.execute(
        f"""SELECT i.body_hash, i.reply, me.*
            FROM (SELECT 1) AS one
            LEFT JOIN inbox i ON i.request_id = %(request_id)s
            LEFT JOIN (SELECT {SESSION_COLUMNS} FROM {SESSION_FROM}) AS me ON TRUE""",
        {"request_id": request_id, "token_hash": token_hash(token or "")},
    ).fetchone()
    if row is None:  # (SELECT 1) always gives its one row
        raise RuntimeError("the inbox lookup returned no row")
    found: dict[str, Any] = row  # type: ignore[assignment]  # dict rows (the pool's row factory)
    stored = None if found["body_hash"] is None else Stored(bytes(found["body_hash"]), bytes(found["reply"]))
    return stored, (None if found["me_id"] is None else found)


def record(conn: psycopg.Connection, request_id: str, body_hash: bytes, reply: bytes) -> None:
    """Raises Conflict (via store.db.transaction) if another gateway recorded it first."""
    conn.execute(
        "INSERT INTO inbox (request_id, body_hash, reply) VALUES (%s, %s, %s)",
        (request_id, body_hash, reply),
    )


def prune(conn: psycopg.Connection, older_than_seconds: float) -> int:
    cur = conn.execute("DELETE FROM inbox WHERE created_at < now() - make_interval(secs => %s)", (older_than_seconds,))
    return cur.rowcount
