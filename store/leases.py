"""Leases of running tasks: a node's progress and heartbeats extend them; the dispatcher finds the
ones that lapsed (their tasks are then released through store/tasks.py)."""

from __future__ import annotations

import psycopg

from broker_contracts.states import TaskStatus
from store.statuses import literal

_RUNNING = literal(TaskStatus.RUNNING)


def progress(conn: psycopg.Connection, task_id: int, run: str, node: str, done: int, lease: float) -> None:
    conn.execute(
        f"""UPDATE tasks SET done_frames = %s, lease_until = now() + make_interval(secs => %s)
           WHERE id = %s AND run_id = %s AND node = %s AND status = {_RUNNING}""",
        (done, lease, task_id, run, node),
    )


def extend_leases(conn: psycopg.Connection, node: str, task_ids: list[int], lease: float) -> None:
    if task_ids:
        conn.execute(
            f"""UPDATE tasks SET lease_until = now() + make_interval(secs => %s)
               WHERE id = ANY(%s) AND node = %s AND status = {_RUNNING}""",
            (lease, task_ids, node),
        )


def expired_leases(conn: psycopg.Connection, grace: float, limit: int = 200) -> list[int]:
    """Running tasks whose node has said nothing for ``grace`` seconds past their lease."""
    rows = conn.execute(
        f"""SELECT id FROM tasks WHERE status = {_RUNNING}
             AND lease_until < now() - make_interval(secs => %s)
           ORDER BY lease_until LIMIT %s""",
        (grace, limit),
    ).fetchall()
    return [r["id"] for r in rows]  # type: ignore[call-overload]


def lease_left(conn: psycopg.Connection, task_id: int) -> float:
    """Seconds until the task's lease lapses (0 when it has none or it has lapsed)."""
    row = conn.execute(
        "SELECT greatest(0, extract(epoch FROM lease_until - now()))::float8 AS left FROM tasks WHERE id = %s",
        (task_id,),
    ).fetchone()
    return float(row["left"] or 0.0) if row else 0.0  # type: ignore[call-overload]
