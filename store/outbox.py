"""The outbox: messages that must follow a commit. Here: 'job N changed' for watching shells."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from broker_contracts.codec import pack

WATCH_STREAM = "watch"


def job_changed(conn: psycopg.Connection, job_ids: Iterable[int]) -> None:
    ids = sorted({j for j in job_ids if j})
    if ids:
        conn.execute(
            "INSERT INTO outbox (stream, payload) SELECT %s, p FROM unnest(%s::bytea[]) AS p",
            (WATCH_STREAM, [pack({"job": j}) for j in ids]),
        )


def take(conn: psycopg.Connection, limit: int = 500) -> list[dict[str, Any]]:
    """Lock and return the oldest rows; delete them with ``done`` in the same transaction."""
    rows = conn.execute(
        "SELECT id, stream, payload FROM outbox ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED", (limit,)
    ).fetchall()
    return [dict(r) for r in rows]  # type: ignore[call-overload]


def done(conn: psycopg.Connection, ids: list[int]) -> None:
    if ids:
        conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", (ids,))
