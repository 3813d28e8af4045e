"""Finished frames as their nodes reported them (migration 0011), and reading them back."""

from __future__ import annotations

from typing import Any

import psycopg


def record(
    conn: psycopg.Connection,
    *,
    task_id: int,
    run: str,
    node: str,
    frame: int,
    seconds: float,
    file: str,
    size: int,
    sha256: str,
    thumb: bytes | None,
) -> None:
    """Keep a finished frame, when the report comes from the task's current run and the frame is its own."""
    conn.execute(
        """INSERT INTO frames AS f (job_id, frame, task_id, attempt, node, seconds, file, bytes, sha256, thumb)
           SELECT t.job_id, %(frame)s, t.id, t.attempt, %(node)s, %(seconds)s, %(file)s, %(bytes)s, %(sha)s, %(thumb)s
             FROM tasks t
            WHERE t.id = %(task)s AND t.run_id = %(run)s AND t.node = %(node)s
              AND %(frame)s BETWEEN t.frame_first AND t.frame_last
           ON CONFLICT (job_id, frame) DO UPDATE SET task_id = EXCLUDED.task_id, attempt = EXCLUDED.attempt,
             node = EXCLUDED.node, seconds = EXCLUDED.seconds, file = EXCLUDED.file, bytes = EXCLUDED.bytes,
             sha256 = EXCLUDED.sha256, thumb = EXCLUDED.thumb, finished_at = now()""",
        {
            "task": task_id,
            "run": run,
            "node": node,
            "frame": frame,
            "seconds": seconds,
            "file": file,
            "bytes": size,
            "sha": sha256,
            "thumb": thumb,
        },
    )


def frames_of(conn: psycopg.Connection, job_id: int, *, after: int | None, limit: int) -> list[dict[str, Any]]:
    """Every frame of the job in order (after ``after``): its record when finished, else its task's status."""
    rows = conn.execute(
        """SELECT g.frame, CASE WHEN f.frame IS NOT NULL THEN 'done' ELSE t.status END AS status,
                  coalesce(f.node, CASE WHEN f.frame IS NULL THEN t.node END) AS node, f.attempt, f.seconds,
                  f.file, f.bytes, f.sha256
             FROM tasks t
             CROSS JOIN LATERAL generate_series(t.frame_first, t.frame_last) AS g(frame)
             LEFT JOIN frames f ON f.job_id = t.job_id AND f.frame = g.frame
            WHERE t.job_id = %(job)s AND (%(after)s::int IS NULL OR g.frame > %(after)s::int)
            ORDER BY g.frame
            LIMIT %(limit)s""",
        {"job": job_id, "after": after, "limit": limit},
    ).fetchall()
    return [dict(r) for r in rows]  # type: ignore[call-overload]


def latest_thumb(conn: psycopg.Connection, job_id: int) -> list[dict[str, Any]]:
    """The thumbnail of the job's frame that finished last (none: an empty list)."""
    row = conn.execute(
        """SELECT frame, thumb FROM frames WHERE job_id = %s AND thumb IS NOT NULL
            ORDER BY finished_at DESC, frame DESC LIMIT 1""",
        (job_id,),
    ).fetchone()
    return [{"frame": row["frame"], "png": bytes(row["thumb"])}] if row else []  # type: ignore[call-overload]


def thumbs_of(
    conn: psycopg.Connection, job_id: int, *, frame: int | None, after: int | None, budget: int
) -> tuple[list[dict[str, Any]], int | None]:
    """The job's thumbnails in frame order, as many as fit ``budget`` bytes; and the frame to go on
    after (None: no more)."""
    rows = conn.execute(
        """SELECT frame, thumb, sum(octet_length(thumb)) OVER (ORDER BY frame) AS running
             FROM frames
            WHERE job_id = %(job)s AND thumb IS NOT NULL
              AND (%(frame)s::int IS NULL OR frame = %(frame)s::int)
              AND (%(after)s::int IS NULL OR frame > %(after)s::int)
            ORDER BY frame""",
        {"job": job_id, "frame": frame, "after": after},
    ).fetchall()
    out: list[dict[str, Any]] = []
    for row in rows:
        if out and row["running"] > budget:  # type: ignore[call-overload]
            return out, out[-1]["frame"]
        out.append({"frame": row["frame"], "png": bytes(row["thumb"])})  # type: ignore[call-overload]
    return out, None


def times_of(conn: psycopg.Connection, job_id: int) -> dict[str, Any]:
    """Frame time min / mean / max of the job's finished frames, and how many there are."""
    row = conn.execute(
        """SELECT count(*) AS done, min(seconds) AS min, avg(seconds) AS mean, max(seconds) AS max
             FROM frames WHERE job_id = %s""",
        (job_id,),
    ).fetchone()
    return dict(row) if row else {"done": 0, "min": None, "mean": None, "max": None}  # type: ignore[call-overload]
