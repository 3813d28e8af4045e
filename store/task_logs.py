"""Task logs: the last part of each attempt's output as its node sent it, and reading them back."""

from __future__ import annotations

from typing import Any

import psycopg

LOG_KEEP = 65536


def append_log(conn: psycopg.Connection, task_id: int, run: str, node: str, text: str) -> None:
    """Keep the last LOG_KEEP characters of the current attempt's output."""
    conn.execute(
        """INSERT INTO task_logs AS l (task_id, attempt, node, output)
           SELECT id, attempt, %(node)s, right(%(text)s, %(keep)s) FROM tasks
           WHERE id = %(task)s AND run_id = %(run)s AND node = %(node)s
           ON CONFLICT (task_id, attempt) DO UPDATE
             SET output = right(l.output || EXCLUDED.output, %(keep)s), updated_at = now()""",
        {"task": task_id, "run": run, "node": node, "text": text, "keep": LOG_KEEP},
    )


def logs_of(conn: psycopg.Connection, job_id: int, frame: int | None, *, limit: int = 200) -> list[dict[str, Any]]:
    """The output of each attempt of the job's tasks (those holding ``frame``, if given), in order."""
    rows = conn.execute(
        """SELECT t.id AS task, CASE WHEN t.frame_first = t.frame_last THEN t.frame_first::text
                  ELSE t.frame_first || '-' || t.frame_last END AS frames, l.attempt, l.node, l.output
            FROM task_logs l JOIN tasks t ON t.id = l.task_id
            WHERE t.job_id = %(job)s
              AND (%(frame)s::int IS NULL OR %(frame)s::int BETWEEN t.frame_first AND t.frame_last)
            ORDER BY t.seq, l.attempt
            LIMIT %(limit)s""",
        {"job": job_id, "frame": frame, "limit": limit},
    ).fetchall()
    return [dict(r) for r in rows]  # type: ignore[call-overload]
