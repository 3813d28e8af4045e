"""Rows written straight into the benchmark's own database with generate_series: fast and exact."""

from __future__ import annotations

from typing import Any

import psycopg

JOB_COLUMNS = """owner_id, name, status, renderer, params, frame_first, frame_last, chunk, priority,
                 max_attempts, pool, frames_total, frames_done, tasks_total, created_at, updated_at"""


def user_jobs(conn: psycopg.Connection[Any], owner_id: int, count: int) -> None:
    """``count`` finished one-frame jobs of one user (what `jobs` pages through)."""
    conn.execute(
        f"""INSERT INTO jobs ({JOB_COLUMNS})
            SELECT %(owner)s, 'seeded-' || g, 'succeeded', 'noop', '{{}}', 1, 1, 1, 50, 3, 'bench-idle', 1, 1, 1,
                   now() - make_interval(secs => %(n)s - g), now()
            FROM generate_series(1, %(n)s) AS g""",
        {"owner": owner_id, "n": count},
    )


def history_job(conn: psycopg.Connection[Any], owner_id: int, tasks: int) -> int:
    """A finished job of ``tasks`` one-frame tasks with the history a real run leaves."""
    row = conn.execute(
        f"""INSERT INTO jobs ({JOB_COLUMNS})
            VALUES (%(owner)s, 'history', 'succeeded', 'noop', '{{}}', 1, %(n)s, 1, 50, 3, 'bench-idle',
                    %(n)s, %(n)s, %(n)s, now(), now()) RETURNING id""",
        {"owner": owner_id, "n": tasks},
    ).fetchone()
    job_id: int = row["id"]  # type: ignore[index]
    conn.execute(
        """INSERT INTO tasks (job_id, seq, frame_first, frame_last, status, attempt, pool, priority, node, owner_id)
           SELECT %s, g - 1, g, g, 'succeeded', 1, 'bench-idle', 50, 'n1', %s FROM generate_series(1, %s) AS g""",
        (job_id, owner_id, tasks),
    )
    conn.execute(
        """INSERT INTO job_history (job_id, from_status, to_status, reason, actor)
           VALUES (%(j)s, NULL, 'queued', 'submitted', 'bench'), (%(j)s, 'queued', 'running', 'started', 'n1'),
                  (%(j)s, 'running', 'succeeded', 'finished', 'n1')""",
        {"j": job_id},
    )
    conn.execute(
        """INSERT INTO task_history (task_id, job_id, attempt, from_status, to_status, reason, actor)
           SELECT t.id, t.job_id, s.attempt, s.src, s.dst, s.reason, 'n1'
           FROM tasks t, (VALUES (0, NULL, 'queued', 'submitted'), (1, 'queued', 'running', 'started'),
                                 (1, 'running', 'succeeded', 'finished')) AS s(attempt, src, dst, reason)
           WHERE t.job_id = %s ORDER BY t.id, s.attempt, s.dst DESC""",
        (job_id,),
    )
    return job_id


def bulk(conn: psycopg.Connection[Any], jobs: int, history_rows: int, users: int = 100) -> dict[str, int]:
    """``jobs`` jobs of ``users`` other users, one task each, and ``history_rows`` history rows."""
    conn.execute(
        """INSERT INTO users (username, password_hash)
           SELECT 'bulk' || g, 'not-a-hash' FROM generate_series(1, %s) AS g ON CONFLICT DO NOTHING""",
        (users,),
    )
    first_user = conn.execute("SELECT min(id) AS id FROM users WHERE username LIKE 'bulk%%'").fetchone()["id"]  # type: ignore[index]
    conn.execute(
        f"""INSERT INTO jobs ({JOB_COLUMNS})
            SELECT %(u)s + g %% %(users)s, 'bulk-' || g,
                   (ARRAY['succeeded','succeeded','succeeded','failed','cancelled'])[1 + g %% 5],
                   'noop', '{{}}', 1, 1, 1, 50, 3, 'bench-idle', 1, 1, 1,
                   now() - make_interval(secs => %(n)s - g), now()
            FROM generate_series(1, %(n)s) AS g""",
        {"u": first_user, "users": users, "n": jobs},
    )
    conn.execute(
        """INSERT INTO tasks (job_id, seq, frame_first, frame_last, status, attempt, pool, priority, node, owner_id)
           SELECT j.id, 0, 1, 1, j.status, 1, 'bench-idle', 50, 'bulk', j.owner_id
           FROM jobs j WHERE j.name LIKE 'bulk-%'"""
    )
    job_rows = min(history_rows, 3 * jobs)
    conn.execute(
        """INSERT INTO job_history (job_id, from_status, to_status, at, reason, actor)
           SELECT j.id, s.src, s.dst, j.created_at, 'bulk', 'bench'
           FROM jobs j, (VALUES (1, NULL, 'queued'), (2, 'queued', 'running'), (3, 'running', 'succeeded'))
                AS s(k, src, dst)
           WHERE j.name LIKE 'bulk-%%' AND (j.id - %(min)s) * 3 + s.k <= %(rows)s""",
        {"min": conn.execute("SELECT min(id) AS id FROM jobs WHERE name LIKE 'bulk-%%'").fetchone()["id"],  # type: ignore[index]
         "rows": job_rows},
    )
    task_rows = history_rows - job_rows
    bounds = conn.execute(
        "SELECT min(id) AS lo, count(*) AS n FROM tasks WHERE node = 'bulk'"
    ).fetchone()
    conn.execute(
        """INSERT INTO task_history (task_id, job_id, attempt, from_status, to_status, at, reason, actor)
           SELECT t.id, t.job_id, 1, NULL, (ARRAY['queued','running','succeeded'])[1 + g %% 3], now(), 'bulk', 'bench'
           FROM generate_series(0, %(rows)s - 1) AS g
           JOIN tasks t ON t.id = %(lo)s + g %% %(n)s""",
        {"rows": task_rows, "lo": bounds["lo"], "n": bounds["n"]},  # type: ignore[index]
    )
    conn.execute("ANALYZE")
    return {"jobs": jobs, "tasks": int(bounds["n"]), "job_history": job_rows, "task_history": task_rows}  # type: ignore[index]
