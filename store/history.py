"""History rows: every status change of a job or a task, with its time, cause and actor.

``insert`` is the only code that writes them (tests/unit/test_sql_home.py holds it so)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import tuple_row

from store.db import column_names, iso_utc


def insert(
    source: str,
    *,
    src: str,
    dst: str,
    reason: str,
    actor: str,
    job: str = "job_id",
    task: str | None = None,
    attempt: str | None = None,
    order: str = "",
    returning: str = "",
) -> str:
    """The one writer of history: the INSERT that records a status change for each row of ``source``.

    ``source`` is a FROM list of the statement this INSERT ends or is a CTE of (the RETURNING rows
    of the guarded UPDATE that made the change), so a transition and its history are one statement
    and one round trip. A task's change with ``task`` and ``attempt``, else the job's. The other
    arguments are SQL expressions over ``source``: columns, bound parameters, store.statuses literals.
    """
    if task is None:
        head = "job_history (job_id, from_status, to_status, reason, actor)"
        values = [job, src, dst, reason, actor]
    else:
        if attempt is None:
            raise ValueError("a task's change names its attempt")
        head = "task_history (task_id, job_id, attempt, from_status, to_status, reason, actor)"
        values = [task, job, attempt, src, dst, reason, actor]
    tail = f" ORDER BY {order}" if order else ""
    if returning:
        tail += f" RETURNING {returning}"
    return f"INSERT INTO {head} SELECT {', '.join(values)} FROM {source}{tail}"


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
