"""Jobs: read (scoped to the caller unless admin), and every change of a job after submit (store/submit.py): its status
(derived from its tasks, or a user's cancel and retry, each guarded by the transition table and
recorded by store.history), pause, priority, and the fate of jobs whose dependency failed."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import tuple_row

from broker_contracts.errors import ErrorCode, RfarmError
from broker_contracts.states import (
    JOB_TERMINAL,
    JOB_UNSUCCESSFUL,
    TASK_RETRYABLE,
    JobStatus,
    TaskStatus,
    derive_job_status,
    job_may,
    task_sources,
)
from store import history, tasks
from store.db import column_names, iso_utc
from store.statuses import literal, one_of
from store.users import SESSION_COLUMNS, SESSION_FROM, SESSION_JOIN, User, session_user, token_hash

NOT_FOUND = "no such job: {id}"


# A running job's estimated seconds left: its frames still to render at the mean time of its
# finished frames (migration 0011), over the tasks running now; NULL before its first frame.
ETA_SECONDS = f"""
    CASE WHEN j.status = {literal(JobStatus.RUNNING)} THEN (
        SELECT (j.frames_total - j.frames_done) * avg(f.seconds) / greatest(1, (
            SELECT count(*) FROM tasks t WHERE t.job_id = j.id AND t.status = {literal(TaskStatus.RUNNING)}))
        FROM frames f WHERE f.job_id = j.id) END"""

SUMMARY_COLUMNS = f"""
    j.id, j.name, u.username AS owner, j.status, j.paused, j.priority, j.renderer, j.pool,
    CASE WHEN j.frame_first = j.frame_last THEN j.frame_first::text
         ELSE j.frame_first || '-' || j.frame_last END AS frames,
    j.frames_total, j.frames_done, j.tasks_total, j.created_at, j.updated_at, j.reason,
    {ETA_SECONDS} AS eta_seconds
"""

# The same, with the times as ISO text (what a reply carries): for pages of rows
WIRE_SUMMARY_COLUMNS = SUMMARY_COLUMNS.replace(
    "j.created_at, j.updated_at", f"{iso_utc('j.created_at')} AS created_at, {iso_utc('j.updated_at')} AS updated_at"
)

DETAIL_COLUMNS = (
    SUMMARY_COLUMNS
    + """, j.chunk, j.params, j.max_attempts, j.requires, j.after_job AS after, j.owner_id,
         j.frame_first, j.frame_last, 'job-' || j.id AS output, j.limits, j.task_timeout"""
)


def not_found(job_id: int) -> RfarmError:
    """The same answer for a job that does not exist and one the caller may not see."""
    return RfarmError(ErrorCode.JOB_NOT_FOUND, NOT_FOUND.format(id=job_id))


def _scope(user: User) -> tuple[str, dict[str, Any]]:
    if user.is_admin:
        return "TRUE", {}
    return "j.owner_id = %(uid)s", {"uid": user.id}


def get(conn: psycopg.Connection, user: User, job_id: int, *, lock: bool = False) -> dict[str, Any]:
    """One job with its details, or job.not_found if it does not exist or is not the caller's."""
    where, params = _scope(user)
    row = conn.execute(
        f"""SELECT {DETAIL_COLUMNS} FROM jobs j JOIN users u ON u.id = j.owner_id
            WHERE j.id = %(id)s AND {where} {"FOR UPDATE OF j" if lock else ""}""",
        {"id": job_id, **params},
    ).fetchone()
    if row is None:
        raise not_found(job_id)
    return dict(row)  # type: ignore[call-overload]


def list_page(
    conn: psycopg.Connection,
    token: str,
    *,
    everyone: bool,
    status: str | None,
    limit: int,
    before: int | None,
) -> tuple[User, list[str], list[tuple[Any, ...]]]:
    """The caller (from the session token), the page's column names and its rows (tuples), newest
    first, in ONE statement.

    `jobs` is what every shell asks most (its toolbar too): checking the session in a statement
    of its own would be a second round trip to PostgreSQL for each. The session is the statement's `me`
    row; the page is joined to it, so a bad token gives no page and the error users.session_user says.
    Rows carry the times as ISO text (the reply's form).
    """
    # BETWEEN, not "=": an equality makes the owner a constant, ORDER BY j.id alone, and the
    # primary key a candidate: with 100,000 newer jobs of other users the planner walked it
    # backwards, filtering by owner. With the owner as a range and (owner_id, id DESC) as the order,
    # only jobs_owner (or jobs_owner_status) gives the order: one index range, 50 heap rows.
    if everyone:  # every user's jobs: only for an admin (checked below, and in SQL so none are read)
        clauses, order = ["me.me_is_admin"], "j.id DESC"
        owner, join = "u.username", "JOIN users u ON u.id = j.owner_id"
    else:
        clauses, order = ["j.owner_id BETWEEN me.me_id AND me.me_id"], "j.owner_id, j.id DESC"
        owner, join = "me.me_username", ""  # the caller's own jobs: the owner is the caller
    if status:
        clauses.append("j.status = %(status)s")
    if before:
        clauses.append("j.id < %(before)s")
    query = f"""WITH me AS (SELECT {SESSION_COLUMNS} FROM {SESSION_FROM})
            SELECT me.*, page.* FROM me LEFT JOIN LATERAL (
                SELECT {WIRE_SUMMARY_COLUMNS.replace("u.username", owner)}
                FROM jobs j {join} WHERE {" AND ".join(clauses)} ORDER BY {order} LIMIT %(limit)s
            ) AS page ON NOT me.me_revoked AND NOT me.me_expired"""
    cur = conn.cursor(row_factory=tuple_row)  # the page goes out as rows of values (broker_contracts/tables.py)
    rows = cur.execute(
        query, {"token_hash": token_hash(token), "status": status, "before": before, "limit": limit}
    ).fetchall()
    names = column_names(cur, query)
    width = len(_SESSION_NAMES)
    if names[:width] != list(_SESSION_NAMES):
        raise RuntimeError(f"list_page: unexpected session columns {names[:width]}")
    user = session_user(dict(zip(_SESSION_NAMES, rows[0], strict=False)) if rows else None)
    if everyone and not user.is_admin:
        raise RfarmError(ErrorCode.AUTH_FORBIDDEN, "only an admin may list every user's jobs")
    columns = names[width:]
    if rows[0][width] is None:  # the LEFT JOIN's empty page
        return user, columns, []
    return user, columns, [row[width:] for row in rows]


_SESSION_NAMES = ("me_id", "me_username", "me_is_admin", "me_revoked", "me_expired")

# The newest jobs of each of several callers, each page under its own session (list_page's
# statement for many requests at once: store.jobs.own_pages).
_OWN_PAGES = f"""SELECT r.i, me.*, page.*
    FROM unnest(%(hashes)s::bytea[], %(limits)s::int[]) WITH ORDINALITY AS r(token_hash, lim, i)
    LEFT JOIN LATERAL (SELECT {SESSION_COLUMNS} FROM {SESSION_JOIN} WHERE s.token_hash = r.token_hash) AS me ON TRUE
    LEFT JOIN LATERAL (
        SELECT {WIRE_SUMMARY_COLUMNS.replace("u.username", "me.me_username")}
        FROM jobs j WHERE j.owner_id BETWEEN me.me_id AND me.me_id AND NOT me.me_revoked AND NOT me.me_expired
        ORDER BY j.owner_id, j.id DESC LIMIT r.lim
    ) AS page ON TRUE
    ORDER BY r.i, page.id DESC"""


def own_pages(
    conn: psycopg.Connection, requests: list[tuple[str, int]]
) -> tuple[list[str], list[tuple[dict[str, Any] | None, list[tuple[Any, ...]]]]]:
    """For each (token, limit): the session row (SESSION_COLUMNS; None: no such session) and the
    caller's newest ``limit`` jobs, in ONE statement for all of them; and the page's column names.

    What list_page answers for a plain `jobs` (no filter, not --all), for a batch of such requests
    at once: a statement costs the gateway CPU of its own before any row, and shells poll
    `jobs` more than anything else. Pages of a session that does not hold are empty; the caller
    gives such a request users.session_user's error, as list_page does.
    """
    cur = conn.cursor(row_factory=tuple_row)
    rows = cur.execute(
        _OWN_PAGES, {"hashes": [token_hash(t) for t, _ in requests], "limits": [limit for _, limit in requests]}
    ).fetchall()
    names = column_names(cur, _OWN_PAGES)
    width = 1 + len(_SESSION_NAMES)
    if names[1:width] != list(_SESSION_NAMES):
        raise RuntimeError(f"own_pages: unexpected session columns {names[1:width]}")
    answers: list[tuple[dict[str, Any] | None, list[tuple[Any, ...]]]] = [(None, []) for _ in requests]
    for row in rows:
        i = row[0] - 1
        if answers[i][0] is None and row[1] is not None:
            answers[i] = (dict(zip(_SESSION_NAMES, row[1:width], strict=True)), answers[i][1])
        if row[width] is not None:
            answers[i][1].append(row[width:])
    return names[width:], answers


def tasks_of(conn: psycopg.Connection, job_id: int, *, limit: int = 500) -> list[dict[str, Any]]:
    rows = conn.execute(
        """SELECT id, seq, frame_first, frame_last, status, attempt, node, started_at, finished_at,
                  exit_code, error
           FROM tasks WHERE job_id = %s ORDER BY seq LIMIT %s""",
        (job_id, limit),
    ).fetchall()
    return [dict(r) for r in rows]  # type: ignore[call-overload]



def task_counts(conn: psycopg.Connection, job_id: int) -> dict[str, int]:
    """How many of the job's tasks are in each status."""
    rows = conn.execute("SELECT status, count(*) AS n FROM tasks WHERE job_id = %s GROUP BY status", (job_id,))
    return {r["status"]: r["n"] for r in rows.fetchall()}  # type: ignore[call-overload]


def running_tasks(conn: psycopg.Connection, job_id: int, *, limit: int = 50) -> list[dict[str, Any]]:
    """The job's running tasks in order: id, node, done_frames and frames (as text)."""
    rows = conn.execute(
        f"""SELECT id, node, done_frames, CASE WHEN frame_first = frame_last THEN frame_first::text
                   ELSE frame_first || '-' || frame_last END AS frames
            FROM tasks WHERE job_id = %s AND status = {literal(TaskStatus.RUNNING)} ORDER BY seq LIMIT %s""",
        (job_id, limit),
    ).fetchall()
    return [dict(r) for r in rows]  # type: ignore[call-overload]

def refresh_status(
    conn: psycopg.Connection, job_id: int, reason: str, actor: str, *, started: tuple[str, str] | None = None
) -> str | None:
    """Derive the job's status from its tasks; apply it with a guard and a history row.

    Returns the new status when it changed. The caller holds the job row's lock. ``started`` is
    the (reason, actor) of a task start since the last refresh: a queued job that moves on passes
    through running with that cause, even when its tasks also finished before this refresh.
    """
    job = conn.execute("SELECT status FROM jobs WHERE id = %s FOR UPDATE", (job_id,)).fetchone()
    if job is None:
        return None
    current = JobStatus(job["status"])  # type: ignore[call-overload]
    counts = conn.execute(
        """SELECT status, count(*) AS n, sum(done_frames) AS frames
           FROM tasks WHERE job_id = %s GROUP BY status""",
        (job_id,),
    ).fetchall()
    statuses: list[TaskStatus] = []
    frames_done = 0
    for r in counts:
        statuses.extend([TaskStatus(r["status"])] * r["n"])  # type: ignore[call-overload]
        frames_done += int(r["frames"] or 0)  # type: ignore[call-overload]
    new = derive_job_status(current, statuses)
    conn.execute("UPDATE jobs SET frames_done = %s, updated_at = now() WHERE id = %s", (frames_done, job_id))
    if new == current:
        return None
    if started is not None and current is JobStatus.QUEUED and new in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        if set_status(conn, job_id, current, JobStatus.RUNNING, *started) is None:
            return None
        current = JobStatus.RUNNING
    elif started is not None and current is JobStatus.QUEUED and new is JobStatus.RUNNING:
        reason, actor = started
    return set_status(conn, job_id, current, new, reason, actor)


def set_status(
    conn: psycopg.Connection, job_id: int, current: JobStatus, new: JobStatus, reason: str, actor: str
) -> str | None:
    """Guarded job transition plus its history row, in one statement; nothing happens if the guard refuses."""
    if not job_may(current, new):
        return None
    cur = conn.execute(
        _SET_STATUS,
        {
            "new": new.value,
            "old": current.value,
            "id": job_id,
            "reason": reason,
            "actor": actor,
            "keeps_reason": new in JOB_UNSUCCESSFUL,
            "starts": new is JobStatus.RUNNING,
            "finishes": new in JOB_TERMINAL,
        },
    )
    return new.value if cur.rowcount == 1 else None


_SET_STATUS = f"""WITH moved AS (
      UPDATE jobs SET status = %(new)s, updated_at = now(),
             reason = CASE WHEN %(keeps_reason)s THEN %(reason)s END,
             started_at = CASE WHEN %(starts)s THEN COALESCE(started_at, now()) ELSE started_at END,
             finished_at = CASE WHEN %(finishes)s THEN now() END
      WHERE id = %(id)s AND status = %(old)s RETURNING id)
    {history.insert("moved", job="id", src="%(old)s", dst="%(new)s", reason="%(reason)s", actor="%(actor)s")}"""


def cancel_rest(conn: psycopg.Connection, job_id: int, reason: str) -> None:
    """A failed job starts nothing more: its queued tasks are cancelled (retry brings them back)."""
    tasks.move_all(
        conn,
        job_id,
        frozenset({TaskStatus.QUEUED}),
        TaskStatus.CANCELLED,
        reason,
        "farm",
        sets="dispatched_at = NULL, work_msg = NULL, finished_at = now()",
    )


def cancel(conn: psycopg.Connection, job_id: int, current: JobStatus, who: str) -> None:
    """A user cancels the job: every task that may be cancelled is, and the job with them.
    The caller holds the job's lock and has checked that it is not finished."""
    reason = f"cancelled by {who}"
    tasks.move_all(
        conn,
        job_id,
        task_sources(TaskStatus.CANCELLED),
        TaskStatus.CANCELLED,
        reason,
        who,
        sets="finished_at = now(), run_id = NULL, lease_until = NULL, dispatched_at = NULL, work_msg = NULL",
    )
    set_status(conn, job_id, current, JobStatus.CANCELLED, reason, who)


def retry(conn: psycopg.Connection, job: dict[str, Any], who: str) -> None:
    """A user retries a failed or cancelled job (``job`` as ``get`` read it, locked): its unfinished
    tasks go back to the queue, its nodes are forgiven, and the job is queued again.

    Refused while the job it depends on can no longer succeed: the dependent would fail again at once.
    """
    after = job["after"]
    if after is not None:
        dependency = status_of(conn, after)
        if dependency in JOB_UNSUCCESSFUL:
            ended = _ENDED.get(dependency, dependency)
            message = f"job {job['id']} waits on job {after}, which {ended}: retry job {after} first"
            raise RfarmError(ErrorCode.JOB_INVALID_STATE, message)
    reason = f"retried by {who}"
    tasks.move_all(
        conn,
        job["id"],
        TASK_RETRYABLE,
        TaskStatus.QUEUED,
        reason,
        who,
        sets="""failures = 0, finished_at = NULL, exit_code = NULL, done_frames = 0, error = NULL,
                dispatched_at = NULL, work_msg = NULL, run_id = NULL""",
    )
    tasks.forgive(conn, job["id"])
    set_status(conn, job["id"], JobStatus(job["status"]), JobStatus.QUEUED, reason, who)
    refresh_status(conn, job["id"], reason, who)


_ENDED = {JobStatus.FAILED: "failed", JobStatus.CANCELLED: "was cancelled"}


def status_of(conn: psycopg.Connection, job_id: int) -> JobStatus | None:
    """A job's status, read without the caller's scope (for the farm's own decisions)."""
    row = conn.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()
    return None if row is None else JobStatus(row["status"])  # type: ignore[call-overload]


def set_paused(conn: psycopg.Connection, job_id: int, paused: bool) -> None:
    conn.execute("UPDATE jobs SET paused = %s, updated_at = now() WHERE id = %s", (paused, job_id))


def set_priority(conn: psycopg.Connection, job_id: int, priority: int) -> None:
    """The job's priority, and that of its tasks still waiting (the dispatcher orders by theirs)."""
    conn.execute(
        f"""WITH job AS (UPDATE jobs SET priority = %(p)s, updated_at = now() WHERE id = %(id)s)
            UPDATE tasks SET priority = %(p)s WHERE job_id = %(id)s AND status = {literal(TaskStatus.QUEUED)}""",
        {"p": priority, "id": job_id},
    )


def fail_dependents(conn: psycopg.Connection, *, limit: int = 100) -> list[int]:
    """Queued jobs whose dependency can no longer succeed fail, with their queued tasks; their ids."""
    doomed = conn.execute(
        f"""SELECT j.id, j.after_job, d.status FROM jobs j JOIN jobs d ON d.id = j.after_job
            WHERE j.status = {literal(JobStatus.QUEUED)} AND d.status IN {one_of(JOB_UNSUCCESSFUL)}
            ORDER BY j.id LIMIT %s FOR UPDATE OF j""",
        (limit,),
    ).fetchall()
    for row in doomed:
        reason = f"job {row['after_job']} it depends on {row['status']}"  # type: ignore[call-overload]
        job_id = row["id"]  # type: ignore[call-overload]
        tasks.move_all(
            conn,
            job_id,
            frozenset({TaskStatus.QUEUED}),
            TaskStatus.FAILED,
            reason,
            "farm",
            sets="finished_at = now(), error = %(reason)s",
        )
        refresh_status(conn, job_id, reason, "farm")
    return [r["id"] for r in doomed]  # type: ignore[call-overload]


def count_progress(conn: psycopg.Connection, job_ids: set[int]) -> None:
    """Frames done = every frame of finished tasks plus the frames running tasks reported."""
    if job_ids:
        conn.execute(
            """UPDATE jobs j SET frames_done = s.done, updated_at = now()
               FROM (SELECT job_id, sum(done_frames)::int AS done FROM tasks
                     WHERE job_id = ANY(%s) GROUP BY job_id) AS s
               WHERE j.id = s.job_id AND j.frames_done <> s.done""",
            (sorted(job_ids),),
        )
