"""History rows: every status change of a job or a task, with its time, cause and actor."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import tuple_row

from store.db import column_names, iso_utc


def job_changed(conn: psycopg.Connection, job_id: int, src: str | None, dst: str, reason: str, actor: str) -> None:
    conn.execute(
        """INSERT INTO job_history (job_id, from_status, to_status, reason, actor)
           VALUES (%s, %s, %s, %s, %s)""",
        (job_id, src, dst, reason, actor),
    )


def task_changed(
    conn: psycopg.Connection,
    task_id: int,
    job_id: int,
    attempt: int,
    src: str | None,
    dst: str,
    reason: str,
    actor: str,
) -> None:
    conn.execute(
        """INSERT INTO task_history (task_id, job_id, attempt, from_status, to_status, reason, actor)
           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (task_id, job_id, attempt, src, dst, reason, actor),
    )


def changes(
    conn: psycopg.Connection, job_id: int, *, with_tasks: bool, limit: int = 1000
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The job's own changes, and (newest ``limit``) task changes, in the order they happened:
    the column names (as a reply names them) and the rows as tuples; ``at`` as ISO 8601 text."""
    cur = conn.cursor(row_factory=tuple_row)
    rows = cur.execute(_CHANGES, {"j": job_id, "tasks": with_tasks, "limit": limit}).fetchall()
    return column_names(cur, _CHANGES), rows


_CHANGES = f"""SELECT {iso_utc("at")} AS at, task, frames, attempt, from_status AS "from", to_status AS "to",
                  reason, actor FROM (
           SELECT at, NULL::bigint AS task, NULL::text AS frames, NULL::int AS attempt,
                  from_status, to_status, reason, actor, id, 0 AS kind
           FROM job_history WHERE job_id = %(j)s
           UNION ALL
           SELECT * FROM (
             SELECT h.at, h.task_id, CASE WHEN t.frame_first = t.frame_last THEN t.frame_first::text
                                          ELSE t.frame_first || '-' || t.frame_last END,
                    h.attempt, h.from_status, h.to_status, h.reason, h.actor, h.id, 1
             FROM task_history h JOIN tasks t ON t.id = h.task_id
             WHERE h.job_id = %(j)s AND %(tasks)s
             ORDER BY h.id DESC LIMIT %(limit)s) AS recent
           ) AS changes ORDER BY changes.at, kind DESC, id"""


def for_job(conn: psycopg.Connection, job_id: int, *, with_tasks: bool, limit: int = 1000) -> list[dict[str, Any]]:
    """The same changes as maps (a watch notice carries them so)."""
    columns, rows = changes(conn, job_id, with_tasks=with_tasks, limit=limit)
    return [dict(zip(columns, row, strict=True)) for row in rows]
