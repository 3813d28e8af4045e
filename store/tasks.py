"""Tasks: every change of a task's status (a node's reports, a lost lease, the bulk moves of a job's
tasks), each guarded by the transition table and recorded by store.history; the blocklist.
Their logs are store/task_logs.py, their leases store/leases.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from broker_contracts.states import TaskStatus, task_may
from store import dispatch, history
from store.statuses import literal, one_of


@dataclass
class Task:
    id: int
    job_id: int
    seq: int
    frame_first: int
    frame_last: int
    status: TaskStatus
    attempt: int
    failures: int
    run_id: str | None
    node: str | None
    max_attempts: int
    job_status: str
    work_msg: str | None
    pool: str

    @property
    def frames(self) -> str:
        if self.frame_first == self.frame_last:
            return f"frame {self.frame_first}"
        return f"frames {self.frame_first}-{self.frame_last}"


TASK_COLUMNS = """t.id, t.job_id, t.seq, t.frame_first, t.frame_last, t.status, t.attempt, t.failures,
                  t.run_id, t.node, j.max_attempts, j.status AS job_status, t.work_msg, t.pool"""


def _task(row: Any) -> Task:
    data: dict[str, Any] = dict(row)
    data["status"] = TaskStatus(data["status"])
    return Task(**data)


def lock(conn: psycopg.Connection, task_id: int) -> Task | None:
    """Lock the task's job, then the task (always in that order, so no two writers deadlock)."""
    head = conn.execute("SELECT job_id FROM tasks WHERE id = %s", (task_id,)).fetchone()
    if head is None:
        return None
    conn.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (head["job_id"],))  # type: ignore[call-overload]
    row = conn.execute(
        f"SELECT {TASK_COLUMNS} FROM tasks t JOIN jobs j ON j.id = t.job_id WHERE t.id = %s FOR UPDATE OF t",
        (task_id,),
    ).fetchone()
    return None if row is None else _task(row)


def lock_many(conn: psycopg.Connection, job_ids: list[int], task_ids: list[int]) -> dict[int, Task]:
    """``lock`` for a whole batch in two statements: the jobs in ascending order, then their tasks.

    Only tasks of the given jobs come back; a task reported under another job id is left to ``lock``.
    """
    if not task_ids:
        return {}
    jids = sorted(set(job_ids))
    conn.execute("SELECT 1 FROM jobs WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (jids,))
    # "t.job_id + 0": the job test must not be an index condition. With statistics older than a
    # large job the planner took tasks_job_id_seq_key and filtered every task of the job by id, on
    # every batch; the primary key reaches only the reported tasks.
    rows = conn.execute(
        f"""SELECT {TASK_COLUMNS} FROM tasks t JOIN jobs j ON j.id = t.job_id
            WHERE t.id = ANY(%s) AND t.job_id + 0 = ANY(%s) ORDER BY t.id FOR UPDATE OF t""",
        (sorted(set(task_ids)), jids),
    ).fetchall()
    return {r["id"]: _task(r) for r in rows}  # type: ignore[call-overload]


def move(
    conn: psycopg.Connection,
    task: Task,
    dst: TaskStatus,
    reason: str,
    actor: str,
    *,
    sets: str = "",
    params: dict[str, Any] | None = None,
    attempt: int | None = None,
) -> bool:
    """Guarded transition: applied only if the task is still in the status and attempt we read."""
    if not task_may(task.status, dst):
        return False
    new_attempt = task.attempt if attempt is None else attempt
    # the guarded update and its history row in one statement: one round trip per transition
    cur = conn.execute(
        f"""WITH moved AS (
              UPDATE tasks SET status = %(dst)s, attempt = %(new_attempt)s {"," if sets else ""} {sets}
              WHERE id = %(id)s AND status = %(src)s AND attempt = %(attempt)s RETURNING id, job_id)
            {_MOVED_HISTORY}""",
        {
            "dst": dst.value,
            "src": task.status.value,
            "id": task.id,
            "attempt": task.attempt,
            "new_attempt": new_attempt,
            "reason": reason,
            "actor": actor,
            **(params or {}),
        },
    )
    if cur.rowcount != 1:
        return False
    task.status = dst
    task.attempt = new_attempt
    return True


_MOVED_HISTORY = history.insert(
    "moved", task="id", attempt="%(new_attempt)s", src="%(src)s", dst="%(dst)s", reason="%(reason)s", actor="%(actor)s"
)


def move_all(
    conn: psycopg.Connection,
    job_id: int,
    sources: frozenset[TaskStatus],
    dst: TaskStatus,
    reason: str,
    actor: str,
    *,
    sets: str,
) -> int:
    """Every task of the job in one of ``sources`` to ``dst``, each with its history row, in one
    statement; how many moved. The table must allow each source: a bulk move obeys it as one does.

    ``sets`` may use the parameters %(job)s, %(reason)s and %(actor)s.
    """
    refused = sorted(s for s in sources if not task_may(s, dst))
    if refused or not sources:
        raise ValueError(f"tasks may not move from {refused or 'nowhere'} to {dst}")
    written = history.insert(
        "moved", task="id", attempt="attempt", src="src", dst=literal(dst), reason="%(reason)s", actor="%(actor)s"
    )
    cur = conn.execute(
        f"""WITH old AS (
              SELECT id, status, attempt FROM tasks
              WHERE job_id = %(job)s AND status IN {one_of(sources)} FOR UPDATE),
            moved AS (
              UPDATE tasks t SET status = {literal(dst)}, {sets}
              FROM old WHERE t.id = old.id AND t.status = old.status
              RETURNING t.id, t.job_id, old.status AS src, old.attempt)
            {written}""",
        {"job": job_id, "reason": reason, "actor": actor},
    )
    return cur.rowcount


_QUEUED, _RUNNING, _SUCCEEDED = (literal(s) for s in (TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.SUCCEEDED))


def _pending_history(src: str, dst: str) -> str:
    return history.insert(
        "moved", task="id", attempt="attempt", src=src, dst=dst, reason="reason", actor="node", order="ord"
    )


# Pending's two set-wise moves, each row guarded by the status, attempt (and run) it was read with
_STARTS = f"""WITH v AS (
      SELECT * FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::text[], %s::text[], %s::float8[])
        WITH ORDINALITY AS v(id, attempt, run, node, reason, started, ord)),
    moved AS (
      UPDATE tasks t SET status = {_RUNNING}, attempt = v.attempt + 1, run_id = v.run, node = v.node,
        started_at = COALESCE(to_timestamp(v.started), now()), finished_at = NULL,
        lease_until = now() + make_interval(secs => %s), exit_code = NULL, error = NULL, done_frames = 0
      FROM v WHERE t.id = ANY(%s) AND t.id = v.id AND t.status = {_QUEUED} AND t.attempt = v.attempt
      RETURNING t.id, t.job_id, t.attempt, v.node, v.reason, v.ord)
    {_pending_history(_QUEUED, _RUNNING)}"""

_SUCCEEDS = f"""WITH v AS (
      SELECT * FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::text[], %s::text[])
        WITH ORDINALITY AS v(id, attempt, run, node, reason, ord)),
    moved AS (
      UPDATE tasks t SET status = {_SUCCEEDED}, finished_at = now(), exit_code = 0, lease_until = NULL,
        done_frames = t.frame_last - t.frame_first + 1
      FROM v WHERE t.id = ANY(%s) AND t.id = v.id AND t.status = {_RUNNING} AND t.attempt = v.attempt
        AND t.run_id = v.run
      RETURNING t.id, t.job_id, t.attempt, v.node, v.reason, v.ord)
    {_pending_history(_RUNNING, _SUCCEEDED)}"""


class Pending:
    """Starts and successes of a batch, applied set-wise: one statement for all starts, one for all
    successes, each with its history rows and each row still guarded by status, attempt (and run).

    The caller holds the tasks' row locks, so the state it read decides which moves are queued; a
    task gets at most one queued move (``flush`` before a second one, and before any other write or
    read of these tasks), except that a success may follow a queued start of the same task: all
    starts are applied before all successes. If a guard does not hold at ``flush``, it raises and
    the transaction is rolled back: nothing half applied.
    """

    def __init__(self, lease: float) -> None:
        self.lease = lease
        self.tasks: set[int] = set()  # tasks with a queued move
        self.finished: set[int] = set()  # tasks with a queued success: nothing may follow it
        # id, attempt read, run, node, reason, when the node started it (None: now)
        self._starts: list[tuple[int, int, str, str, str, float | None]] = []
        self._succeeds: list[tuple[int, int, str, str]] = []  # id, attempt, run, reason (actor: node)
        self._succeed_nodes: list[str] = []

    def start(self, task: Task, run: str, node: str, started: float | None = None) -> bool:
        if task.id in self.tasks or not task_may(task.status, TaskStatus.RUNNING):
            raise ValueError(f"task {task.id}: a start cannot be queued here")
        attempt = task.attempt + 1
        self._starts.append((task.id, task.attempt, run, node, f"node {node} started attempt {attempt}", started))
        self.tasks.add(task.id)
        task.status, task.attempt, task.run_id, task.node = TaskStatus.RUNNING, attempt, run, node
        return True

    def succeed(self, task: Task, run: str, node: str) -> bool:
        if task.id in self.finished or not task_may(task.status, TaskStatus.SUCCEEDED):
            raise ValueError(f"task {task.id}: a success cannot be queued here")
        reason = f"node {node} finished {task.frames} (attempt {task.attempt})"
        self._succeeds.append((task.id, task.attempt, run, reason))
        self._succeed_nodes.append(node)
        self.tasks.add(task.id)
        self.finished.add(task.id)
        task.status = TaskStatus.SUCCEEDED
        return True

    def flush(self, conn: psycopg.Connection) -> None:
        if self._starts:
            ids, attempts, runs, nodes, reasons, started = (list(c) for c in zip(*self._starts, strict=True))
            cur = conn.execute(_STARTS, (ids, attempts, runs, nodes, reasons, started, self.lease, ids))
            if cur.rowcount != len(ids):
                raise RuntimeError(f"{len(ids) - cur.rowcount} of {len(ids)} queued starts no longer applied")
        if self._succeeds:
            ids, attempts, runs, reasons = (list(c) for c in zip(*self._succeeds, strict=True))
            cur = conn.execute(_SUCCEEDS, (ids, attempts, runs, self._succeed_nodes, reasons, ids))
            if cur.rowcount != len(ids):
                raise RuntimeError(f"{len(ids) - cur.rowcount} of {len(ids)} queued successes no longer applied")
        self.tasks.clear()
        self.finished.clear()
        self._starts.clear()
        self._succeeds.clear()
        self._succeed_nodes.clear()


def start(
    conn: psycopg.Connection,
    task: Task,
    run: str,
    node: str,
    lease: float,
    pending: Pending | None = None,
    *,
    attempt: int | None = None,
    started: float | None = None,
) -> bool:
    """A node started the task: a new attempt. A running task started elsewhere lost its lease.

    With ``pending`` the start itself is queued there (the lease-lost move, if any, is applied now).
    ``attempt`` is the run's attempt number as its work item gave it (None: not known): a run of
    an older attempt changes nothing, nor does one whose attempt already ended (its last report
    came first and applied its start with it). ``started``: when the node started it (None: now).
    """
    if attempt is not None and (
        attempt < task.attempt or (attempt == task.attempt and task.status is not TaskStatus.RUNNING)
    ):
        return False
    if task.status is TaskStatus.RUNNING:
        if task.run_id == run:
            return False  # the same report twice
        lost = f"lease lost by node {task.node} (attempt {task.attempt}); taken over by node {node}"
        if not move(
            conn, task, TaskStatus.QUEUED, lost, "farm", sets="failures = failures + 1, run_id = NULL, done_frames = 0"
        ):
            return False
        task.failures += 1
    if task.status is not TaskStatus.QUEUED:
        return False
    if pending is not None:
        return pending.start(task, run, node, started)
    new_attempt = task.attempt + 1
    ok = move(
        conn,
        task,
        TaskStatus.RUNNING,
        f"node {node} started attempt {new_attempt}",
        node,
        attempt=new_attempt,
        sets="""run_id = %(run)s, node = %(node)s, started_at = COALESCE(to_timestamp(%(started)s), now()),
                finished_at = NULL, lease_until = now() + make_interval(secs => %(lease)s), exit_code = NULL,
                error = NULL, done_frames = 0""",
        params={"run": run, "node": node, "lease": lease, "started": started},
    )
    if ok:
        task.run_id = run
        task.node = node
    return ok


def start_before_end(
    conn: psycopg.Connection,
    task: Task,
    run: str,
    node: str,
    lease: float,
    attempt: int,
    started: float,
    pending: Pending | None = None,
) -> bool:
    """A run's last report arrived before its "started" (reports applied out of order): apply the
    start first, as it happened, if the task is still queued for the very attempt that run was
    dispatched for; the caller then applies the last report to the running task.

    A task that started since (another run, a newer attempt) is left as it is: the report is stale.
    """
    if task.status is not TaskStatus.QUEUED or task.attempt != attempt - 1:
        return False
    return start(conn, task, run, node, lease, pending, attempt=attempt, started=started)


def succeed(conn: psycopg.Connection, task: Task, run: str, node: str, pending: Pending | None = None) -> bool:
    if task.status is not TaskStatus.RUNNING or task.run_id != run:
        return False
    if pending is not None:
        return pending.succeed(task, run, node)
    return move(
        conn,
        task,
        TaskStatus.SUCCEEDED,
        f"node {node} finished {task.frames} (attempt {task.attempt})",
        node,
        sets="""finished_at = now(), exit_code = 0, lease_until = NULL,
                done_frames = frame_last - frame_first + 1""",
    )


def fail(
    conn: psycopg.Connection, task: Task, run: str | None, node: str, exit_code: int | None, error: str, *, cause: str
) -> TaskStatus | None:
    """An attempt failed. Back to queued while attempts are left, else failed. None if stale."""
    if task.status is not TaskStatus.RUNNING or (run is not None and task.run_id != run):
        return None
    failures = task.failures + 1
    left = failures < task.max_attempts
    dst = TaskStatus.QUEUED if left else TaskStatus.FAILED
    detail = f"{cause}: {error}" if error else cause
    reason = (
        f"{detail} (attempt {task.attempt}, {failures} of {task.max_attempts} allowed failures)"
        if left
        else f"{detail}; no attempts left ({failures} of {task.max_attempts})"
    )
    sets = """failures = failures + 1, exit_code = %(code)s, error = %(error)s, lease_until = NULL,
              run_id = NULL, dispatched_at = NULL, work_msg = NULL, done_frames = 0"""
    if not left:
        sets += ", finished_at = now()"
    if not move(conn, task, dst, reason, node, sets=sets, params={"code": exit_code, "error": error[:2000]}):
        return None
    task.failures = failures
    if node != "farm":
        conn.execute(
            """INSERT INTO task_blocklist AS b (job_id, node, failures) VALUES (%s, %s, 1)
               ON CONFLICT (job_id, node) DO UPDATE SET failures = b.failures + 1""",
            (task.job_id, node),
        )
    return dst


def release(conn: psycopg.Connection, task: Task, run: str | None, node: str, why: str) -> bool:
    """A node handed the task back. Not a failure: a queued task simply returns to the backlog."""
    if task.status is TaskStatus.QUEUED:
        dispatch.undispatch(conn, [task.id])
        return True
    if task.status is not TaskStatus.RUNNING or task.run_id != run:
        return False
    return move(
        conn,
        task,
        TaskStatus.QUEUED,
        f"node {node} handed it back: {why}",
        node,
        sets="run_id = NULL, lease_until = NULL, dispatched_at = NULL, work_msg = NULL, done_frames = 0",
    )


def forgive(conn: psycopg.Connection, job_id: int) -> None:
    """A retried job starts afresh: no node is blocked for its earlier failures."""
    conn.execute("DELETE FROM task_blocklist WHERE job_id = %s", (job_id,))


def blocked_nodes(conn: psycopg.Connection, job_id: int) -> list[str]:
    """The nodes that failed the job's tasks too often to be given more of them."""
    rows = conn.execute(
        "SELECT node FROM task_blocklist WHERE job_id = %s AND failures >= 3 ORDER BY node", (job_id,)
    ).fetchall()
    return [r["node"] for r in rows]  # type: ignore[call-overload]
