"""What `rfarm why JOB` reads: the job's tasks by where they stand, the waiting work of its pool by
user and priority (counts only, no other user's names), the slots each user holds, its limits, the
nodes that could run it. gateway/why.py turns the facts into reasons."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from broker_contracts.states import JOB_TERMINAL, TaskStatus
from store.dispatch import ALIVE, JOB_ACTIVE
from store.limits import held_by
from store.statuses import literal, one_of

_QUEUED = literal(TaskStatus.QUEUED)


@dataclass
class Facts:
    tasks: dict[str, int]  # ready (queued, not in Redis), dispatched, running, succeeded, failed, cancelled
    next_seq: int | None  # the job's next ready task
    # ready work of the pool's other unpaused unfinished jobs: (owner is the job's owner, priority,
    # older than the job, tasks) and each other user's slots held and weight
    waiting: list[dict[str, Any]] = field(default_factory=list)
    held: dict[int, int] = field(default_factory=dict)
    weights: dict[int, float] = field(default_factory=dict)
    window: int = 0  # the pool's dispatched tasks not started yet (of other jobs)
    nodes: list[dict[str, Any]] = field(default_factory=list)  # live nodes of the pool
    limits: list[dict[str, Any]] = field(default_factory=list)  # the job's limits: name, count (None: unset), in_use
    blocked: list[str] = field(default_factory=list)


def facts(conn: psycopg.Connection, job: dict[str, Any]) -> Facts:
    job_id, pool = job["id"], job["pool"]
    counts = conn.execute(
        f"""SELECT count(*) FILTER (WHERE status = {_QUEUED} AND dispatched_at IS NULL)::int AS ready,
                   count(*) FILTER (WHERE status = {_QUEUED} AND dispatched_at IS NOT NULL)::int AS dispatched,
                   count(*) FILTER (WHERE status = {literal(TaskStatus.RUNNING)})::int AS running,
                   count(*) FILTER (WHERE status = {literal(TaskStatus.SUCCEEDED)})::int AS succeeded,
                   count(*) FILTER (WHERE status = {literal(TaskStatus.FAILED)})::int AS failed,
                   count(*) FILTER (WHERE status = {literal(TaskStatus.CANCELLED)})::int AS cancelled,
                   min(seq) FILTER (WHERE status = {_QUEUED} AND dispatched_at IS NULL) AS next_seq
            FROM tasks WHERE job_id = %s""",
        (job_id,),
    ).fetchone()
    row: dict[str, Any] = dict(counts)  # type: ignore[call-overload]
    out = Facts(tasks={k: v for k, v in row.items() if k != "next_seq"}, next_seq=row["next_seq"])
    if job["status"] in JOB_TERMINAL:
        return out
    out.waiting = [
        dict(r)  # type: ignore[call-overload]
        for r in conn.execute(
            f"""SELECT t.owner_id, t.priority, t.job_id < %(job)s AS older, count(*)::int AS n
                FROM tasks t JOIN jobs j ON j.id = t.job_id
                WHERE t.pool = %(pool)s AND t.status = {_QUEUED} AND t.dispatched_at IS NULL AND t.job_id <> %(job)s
                  AND NOT j.paused AND j.status IN {one_of(JOB_ACTIVE)}
                GROUP BY 1, 2, 3""",
            {"job": job_id, "pool": pool},
        )
    ]
    out.held = {
        r["owner_id"]: r["n"]  # type: ignore[call-overload]
        for r in conn.execute(
            f"SELECT owner_id, count(*)::int AS n FROM tasks t WHERE t.pool = %s AND {held_by('t')} GROUP BY 1",
            (pool,),
        )
    }
    owners = sorted({job["owner_id"], *out.held, *(w["owner_id"] for w in out.waiting)})
    out.weights = {
        r["user_id"]: float(r["weight"])  # type: ignore[call-overload]
        for r in conn.execute("SELECT user_id, weight FROM user_shares WHERE user_id = ANY(%s)", (owners,))
    }
    window = conn.execute(
        f"""SELECT count(*)::int AS n FROM tasks WHERE pool = %s AND status = {_QUEUED}
            AND dispatched_at IS NOT NULL AND job_id <> %s""",
        (pool, job_id),
    ).fetchone()
    out.window = int(window["n"])  # type: ignore[index]
    out.nodes = [
        dict(r)  # type: ignore[call-overload]
        for r in conn.execute(
            f"""SELECT n.id, n.slots, n.tags, n.profiles, n.state, cardinality(n.running) AS busy, n.drained
                FROM nodes n WHERE n.pool = %s AND {ALIVE} ORDER BY n.id""",
            (pool,),
        )
    ]
    names = list(job.get("limits") or [])
    if names:
        counts_of = {
            r["name"]: r["count"]  # type: ignore[call-overload]
            for r in conn.execute("SELECT name, count FROM farm_limits WHERE name = ANY(%s)", (names,))
        }
        used = {
            r["name"]: r["n"]  # type: ignore[call-overload]
            for r in conn.execute(
                f"""SELECT l AS name, count(*)::int AS n FROM tasks t JOIN jobs j ON j.id = t.job_id,
                          unnest(j.limits) AS l
                   WHERE {held_by("t")} AND j.limits && %(names)s::text[] AND l = ANY(%(names)s::text[])
                   GROUP BY l""",
                {"names": names},
            )
        }
        out.limits = [{"name": n, "count": counts_of.get(n), "in_use": used.get(n, 0)} for n in sorted(names)]
    out.blocked = [
        r["node"]  # type: ignore[call-overload]
        for r in conn.execute(
            "SELECT node FROM task_blocklist WHERE job_id = %s AND failures >= 3 ORDER BY node", (job_id,)
        )
    ]
    return out
