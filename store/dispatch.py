"""The dispatcher's bookkeeping: live capacity per pool, the next ready tasks (best first) marked
dispatched, and their work entries. It changes no status: a dispatched task stays queued."""

from __future__ import annotations

from typing import Any

import psycopg

from broker_contracts.states import JOB_TERMINAL, JobStatus, TaskStatus
from store import fairshare, limits
from store.limits import held_by
from store.statuses import literal, one_of

_QUEUED = literal(TaskStatus.QUEUED)
JOB_ACTIVE = frozenset(JobStatus) - JOB_TERMINAL
# the failed attempts that a retry should not give to the same node again
_FAILED_ATTEMPT = (
    f"h.from_status = {literal(TaskStatus.RUNNING)} AND h.to_status IN {one_of({TaskStatus.QUEUED, TaskStatus.FAILED})}"
)

# A node is alive while its heartbeats keep coming: three heartbeats (at most 15 s) of silence is lost.
ALIVE = "n.state <> 'gone' AND n.last_seen > now() - make_interval(secs => LEAST(15, GREATEST(n.lease, 3)))"
# A node that may be given work: alive and not drained by an admin
USABLE = f"{ALIVE} AND NOT n.drained"


def pools(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Each pool with live nodes: its slots, running tasks and dispatched-but-unstarted tasks."""
    rows = conn.execute(
        f"""SELECT n.pool, sum(n.slots)::int AS slots,
                   (SELECT count(*) FROM tasks t WHERE t.pool = n.pool AND t.status = {_QUEUED}
                      AND t.dispatched_at IS NOT NULL)::int AS outstanding
            FROM nodes n WHERE {USABLE} GROUP BY n.pool"""
    ).fetchall()
    return [dict(r) for r in rows]  # type: ignore[call-overload]


def take_ready(conn: psycopg.Connection, pool: str, limit: int) -> list[dict[str, Any]]:
    """Mark up to ``limit`` ready tasks dispatched and return what their work items need, in the
    order they should be published (store/fairshare.deal: priority, then users in turn, then job
    age; never past a limit's count).

    Ready: queued, not yet in Redis, its job neither paused nor finished, its dependency done, none
    of its limits full, and some live node of the pool offers the job's renderer and carries every
    tag it requires. Each user's best ``limit`` ready tasks are read (one index walk per user with
    unfinished work in the pool), then dealt out in Python. When any of them takes a limit, the
    limits' rows are locked before what holds them is counted: two gateways dispatching at once
    count one after the other, so a limit is never passed.
    """
    rows = conn.execute(_CANDIDATES, {"pool": pool, "limit": limit}).fetchall()
    if not rows:
        return []
    owners = {r["owner_id"] for r in rows}  # type: ignore[call-overload]
    if len(owners) == 1 and not any(r["limits"] for r in rows):  # type: ignore[call-overload]
        # one user and no limit: nothing to deal, the plain order (the common case of a busy farm)
        rows.sort(key=lambda r: (-r["priority"], r["job_id"], r["seq"]))  # type: ignore[call-overload]
        ids = [r["id"] for r in rows[:limit]]  # type: ignore[call-overload]
    else:
        ids = [c.id for c in _deal(conn, pool, rows, owners, limit)]
    order = {task_id: i for i, task_id in enumerate(ids)}
    taken = conn.execute(_TAKE, {"ids": list(order)}).fetchall()
    out = [dict(r) for r in taken]  # type: ignore[call-overload]
    out.sort(key=lambda r: order[r["task_id"]])
    return out


def _deal(
    conn: psycopg.Connection, pool: str, rows: list[Any], owners: set[int], limit: int
) -> list[fairshare.Candidate]:
    """Several users, or limits: the slots each user holds, their weights and the limits' room
    (under the limits' row locks), then store/fairshare.deal."""
    candidates = [
        fairshare.Candidate(r["id"], r["owner_id"], r["priority"], r["job_id"], r["seq"], tuple(r["limits"]))
        for r in rows
    ]
    names = sorted({name for c in candidates for name in c.limits})
    room = limits.room(conn, names) if names else {}
    held = {r["owner_id"]: r["n"] for r in conn.execute(_HELD, {"pool": pool}).fetchall()}  # type: ignore[call-overload]
    weights = {
        r["user_id"]: r["weight"]  # type: ignore[call-overload]
        for r in conn.execute("SELECT user_id, weight FROM user_shares WHERE user_id = ANY(%s)", (sorted(owners),))
    }
    return fairshare.deal(candidates, held, weights, room, limit)


# Each user's best ready tasks in the pool (the users: owners of the pool's unfinished jobs).
_CANDIDATES = f"""
    WITH full_limits AS (
      SELECT name FROM farm_limits l
      WHERE l.count <= (SELECT count(*) FROM tasks h JOIN jobs hj ON hj.id = h.job_id
                        WHERE {held_by("h")} AND l.name = ANY(hj.limits))),
    owners AS (
      SELECT DISTINCT owner_id FROM jobs
      WHERE pool = %(pool)s AND status IN {one_of(JOB_ACTIVE)} AND NOT paused)
    SELECT c.* FROM owners o, LATERAL (
      SELECT t.id, t.owner_id, t.priority, t.job_id, t.seq, j.limits FROM tasks t JOIN jobs j ON j.id = t.job_id
      WHERE t.pool = %(pool)s AND t.owner_id = o.owner_id AND t.status = {_QUEUED} AND t.dispatched_at IS NULL
        -- "not finished" rather than "queued or running": the job is reached by its primary
        -- key; with stale statistics the planner walked jobs_status for every task instead
        AND NOT j.paused AND j.status NOT IN {one_of(JOB_TERMINAL)}
        AND (j.after_job IS NULL
             OR EXISTS (SELECT 1 FROM jobs d WHERE d.id = j.after_job
                        AND d.status = {literal(JobStatus.SUCCEEDED)}))
        AND (j.limits = '{{}}' OR NOT j.limits && ARRAY(SELECT name FROM full_limits))
        AND EXISTS (SELECT 1 FROM nodes n WHERE n.pool = t.pool AND {USABLE}
                    AND j.renderer = ANY(n.profiles) AND j.requires <@ n.tags)
      ORDER BY t.priority DESC, t.job_id, t.seq
      LIMIT %(limit)s) AS c"""

# the slots each user holds in the pool now
_HELD = f"""SELECT owner_id, count(*)::int AS n FROM tasks t
            WHERE t.pool = %(pool)s AND {held_by("t")} GROUP BY owner_id"""

_TAKE = f"""WITH picked AS (
      SELECT t.id FROM tasks t
      WHERE t.id = ANY(%(ids)s::bigint[]) AND t.status = {_QUEUED} AND t.dispatched_at IS NULL
      FOR UPDATE OF t SKIP LOCKED),
    failed_on AS (
      SELECT DISTINCT h.task_id, h.actor AS node FROM task_history h JOIN picked p ON p.id = h.task_id
      WHERE {_FAILED_ATTEMPT} AND h.actor <> 'farm')
    UPDATE tasks t SET dispatched_at = now(), work_msg = NULL
    FROM picked, jobs j
    WHERE t.id = picked.id AND j.id = t.job_id
    RETURNING t.id AS task_id, t.job_id, t.seq, t.frame_first AS first, t.frame_last AS last,
              j.renderer, j.params, j.requires, j.max_attempts, t.priority, t.attempt, j.task_timeout,
              ARRAY(SELECT b.node FROM task_blocklist b WHERE b.job_id = t.job_id AND b.failures >= 3
                    UNION
                    -- a retry goes to a node that has not failed this task, while one is alive
                    SELECT f.node FROM failed_on f
                    WHERE f.task_id = t.id AND EXISTS (
                      SELECT 1 FROM nodes n WHERE n.pool = t.pool AND {USABLE}
                        AND j.renderer = ANY(n.profiles) AND j.requires <@ n.tags
                        AND n.id NOT IN (SELECT g.node FROM failed_on g WHERE g.task_id = t.id))
                   ) AS blocked_nodes"""


def set_work_msgs(conn: psycopg.Connection, pairs: list[tuple[int, str]]) -> None:
    if pairs:
        conn.execute(
            # "t.id = ANY" lets the planner walk the primary key; joined to unnest() alone it
            # hashed and scanned the whole tasks table on every publish
            f"""UPDATE tasks t SET work_msg = p.msg
               FROM unnest(%(ids)s::bigint[], %(msgs)s::text[]) AS p(id, msg)
               WHERE t.id = p.id AND t.id = ANY(%(ids)s::bigint[]) AND t.status = {_QUEUED}""",
            {"ids": [p[0] for p in pairs], "msgs": [p[1] for p in pairs]},
        )


def stale_dispatched(conn: psycopg.Connection, older_than: float, limit: int = 500) -> list[dict[str, Any]]:
    rows = conn.execute(
        f"""SELECT id, pool, work_msg FROM tasks
           WHERE status = {_QUEUED} AND dispatched_at < now() - make_interval(secs => %s)
           ORDER BY dispatched_at LIMIT %s""",
        (older_than, limit),
    ).fetchall()
    return [dict(r) for r in rows]  # type: ignore[call-overload]


def undispatch(conn: psycopg.Connection, task_ids: list[int]) -> None:
    """Back to the backlog: the dispatcher will publish them again in priority order."""
    if task_ids:
        conn.execute(
            f"""UPDATE tasks SET dispatched_at = NULL, work_msg = NULL
               WHERE id = ANY(%s) AND status = {_QUEUED}""",
            (task_ids,),
        )


def still_waiting(conn: psycopg.Connection, task_ids: list[int]) -> None:
    """Their work entries are still in the stream: they count as dispatched from now on."""
    if task_ids:
        conn.execute("UPDATE tasks SET dispatched_at = now() WHERE id = ANY(%s)", (task_ids,))


# The busy tables whose statistics the planner must not trust once they are far off.
_TRACKED = ("tasks", "jobs")


def refresh_statistics(conn: psycopg.Connection, *, floor: int = 1000) -> list[str]:
    """ANALYZE each busy table changed by more than ``floor`` rows and more than half its size since
    its statistics were taken; returns the tables analyzed.

    A fresh farm's statistics say `tasks` holds a few succeeded rows. Then one submit adds 5,000
    queued tasks, and until autovacuum's next look (a minute or more) every plan believes that
    status = 'queued' matches one row: the ledger's batch UPDATE joined its 50 ids to a sequential
    scan of every task (seen with auto_explain on the benchmark; docs/PERFORMANCE.md).
    Analyzing as soon as the tables have moved that far keeps the plans right; it samples, does
    not block writers, and invalidates the plans other sessions cached.
    """
    rows = conn.execute(
        """SELECT s.relname, s.n_mod_since_analyze AS changed, greatest(c.reltuples, 0)::bigint AS size
           FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
           WHERE s.schemaname = current_schema() AND s.relname = ANY(%s)""",
        (list(_TRACKED),),
    ).fetchall()
    stale = [r["relname"] for r in rows if r["changed"] > floor and r["changed"] > r["size"] / 2]  # type: ignore[call-overload]
    for table in stale:
        conn.execute(f"ANALYZE {table}")  # names from _TRACKED only
    return stale
