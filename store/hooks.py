"""The finishes of jobs (succeeded, failed, cancelled) in order, and the hook runners' cursors."""

from __future__ import annotations

from typing import Any

import psycopg

from broker_contracts.states import JOB_TERMINAL
from store.statuses import one_of

# A finish is handed out only once its row is this old: history ids come from a sequence, so a
# transaction that took an id a moment before another may commit a moment after it; waiting this
# long lets it commit, rather than the cursor passing its row by.
SETTLE_SECONDS = 2.0


def cursor(conn: psycopg.Connection, name: str, *, from_start: bool) -> int:
    """The id the runner ``name`` got to; a new runner starts at the latest finish (or the first)."""
    conn.execute(
        """INSERT INTO hook_cursors (name, last_id)
           SELECT %(name)s, CASE WHEN %(start)s THEN 0 ELSE coalesce(max(id), 0) END FROM job_history
           ON CONFLICT (name) DO NOTHING""",
        {"name": name, "start": from_start},
    )
    row = conn.execute("SELECT last_id FROM hook_cursors WHERE name = %s", (name,)).fetchone()
    assert row is not None
    return int(row["last_id"])  # type: ignore[call-overload]


def finishes_after(conn: psycopg.Connection, after: int, *, limit: int = 100) -> list[dict[str, Any]]:
    """Job finishes past ``after`` that have settled, oldest first, each with its job."""
    rows = conn.execute(
        f"""SELECT h.id AS finish, h.to_status AS status, h.reason, h.at AS finished_at,
                   j.id, j.name, u.username AS owner, j.renderer, j.pool, j.priority,
                   j.frame_first, j.frame_last, j.created_at
              FROM job_history h JOIN jobs j ON j.id = h.job_id JOIN users u ON u.id = j.owner_id
             WHERE h.id > %(after)s AND h.to_status IN {one_of(JOB_TERMINAL)}
               AND h.at < clock_timestamp() - make_interval(secs => %(settle)s)
             ORDER BY h.id LIMIT %(limit)s""",
        {"after": after, "settle": SETTLE_SECONDS, "limit": limit},
    ).fetchall()
    return [dict(r) for r in rows]  # type: ignore[call-overload]


def advance(conn: psycopg.Connection, name: str, last_id: int) -> None:
    conn.execute(
        "UPDATE hook_cursors SET last_id = greatest(last_id, %s), updated_at = now() WHERE name = %s",
        (last_id, name),
    )
