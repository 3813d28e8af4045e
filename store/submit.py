"""Submit: a job, its tasks and their first history rows made in one statement, under the owner's
quotas (store/quotas.py) checked by the same statement against their running sums (user_load,
migrations/0008); with a session token, the session is checked by it too."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from broker_contracts.errors import ErrorCode, RfarmError
from broker_contracts.frames import parse_frames
from broker_contracts.messages import SubmitRequest
from broker_contracts.states import JobStatus, TaskStatus
from store import history, quotas
from store.inbox import Answer
from store.jobs import get
from store.statuses import literal
from store.users import SESSION_COLUMNS, SESSION_FROM, User, session_user, token_hash


def submit(conn: psycopg.Connection, owner: User, req: SubmitRequest, *, answer: Answer | None = None) -> int:
    """The new job's id. With ``answer``, the request's answer is recorded by the same statement."""
    if req.after is not None:
        get(conn, owner, req.after)  # the dependency must be a job the caller may see
    query, params = _submit_statement(req, answer, owner="SELECT %(owner)s::bigint AS id, %(actor)s::text AS name")
    row = conn.execute(
        query + f" SELECT (SELECT id FROM job) AS job_id, {_QUOTA_COLUMNS}",
        {**params, "owner": owner.id, "actor": owner.username},
    ).fetchone()
    return _made(row, req)  # type: ignore[arg-type]  # a SELECT of subqueries always gives its one row


def submit_in_session(
    conn: psycopg.Connection, token: str, req: SubmitRequest, *, answer: Answer | None = None
) -> tuple[User, int]:
    """The caller (from the session token) and the new job's id, in ONE statement: the job is made
    only under a session that holds, and users.session_user says why not otherwise. A submit
    without ``after`` needs no other round trip (RequestType.records_own_answer)."""
    query, params = _submit_statement(
        req,
        answer,
        head=f"me AS (SELECT {SESSION_COLUMNS} FROM {SESSION_FROM}), ",
        owner="SELECT me_id AS id, me_username AS name FROM me WHERE NOT me_revoked AND NOT me_expired",
    )
    row = conn.execute(
        query + f" SELECT me.*, (SELECT id FROM job) AS job_id, {_QUOTA_COLUMNS}"
        " FROM (SELECT 1) AS one LEFT JOIN me ON TRUE",
        {**params, "token_hash": token_hash(token)},
    ).fetchone()
    found: dict[str, Any] = row  # type: ignore[assignment]  # (SELECT 1) always gives its one row
    user = session_user(None if found["me_id"] is None else found)
    return user, _made(found, req)


# what the submit statement read of the owner's quota, to say which one refused a job
_QUOTA_COLUMNS = """(SELECT queued FROM load) AS quota_queued,
    (SELECT max_queued_tasks FROM limits) AS quota_max_queued,
    (SELECT max_submits_per_minute FROM limits) AS quota_max_submits"""


# names the submits-per-minute quota in its refusal: any submit of that user is refused until the
# minute ends (gateway/held.py holds such a caller back without a statement)
MINUTE_FULL = "submits a minute"
# names a queued-tasks quota already full: no job fits until some of the user's tasks end
NO_ROOM = "no room for another"


def _made(row: dict[str, Any], req: SubmitRequest) -> int:
    """The new job's id, or quota.exceeded saying which quota the statement found full."""
    if row["job_id"] is not None:
        return int(row["job_id"])
    tasks = len(parse_frames(req.frames).chunks(req.chunk))
    if row["quota_queued"] + tasks > row["quota_max_queued"]:
        adds = NO_ROOM if row["quota_queued"] >= row["quota_max_queued"] else f"this job adds {tasks}"
        raise RfarmError(
            ErrorCode.QUOTA_EXCEEDED,
            f"your quota is {row['quota_max_queued']} queued or running tasks: you have {row['quota_queued']}"
            f" and {adds}; wait for some to finish, cancel some, or ask an operator",
        )
    raise RfarmError(
        ErrorCode.QUOTA_EXCEEDED,
        f"your quota is {row['quota_max_submits']} {MINUTE_FULL}: try again in a minute, or ask an operator",
    )


# the first history rows of a job being submitted, and of its tasks
_SUBMITTED_JOB = history.insert(
    "job, owner",
    job="job.id",
    src="NULL",
    dst=literal(JobStatus.QUEUED),
    reason="'submitted by ' || owner.name",
    actor="owner.name",
    returning="job_id",
)
_SUBMITTED_TASKS = history.insert(
    "task, owner",
    task="task.id",
    job="task.job_id",
    attempt="0",
    src="NULL",
    dst=literal(TaskStatus.QUEUED),
    reason="'submitted'",
    actor="owner.name",
    order="task.id",
)


def _submit_statement(
    req: SubmitRequest, answer: Answer | None, *, owner: str, head: str = ""
) -> tuple[str, dict[str, Any]]:
    """The statement (without its final SELECT) that makes a job for the one row of ``owner``
    (columns id, name), and its parameters.

    The job, its first history row, its tasks and theirs in ONE statement (one round trip, not
    four), however many frames the job has, and with ``answer`` the request's recorded answer. The
    foreign keys of the history rows are checked at the end of the statement, when the rows they
    name exist. Each CTE reads the one before it, so they run in this order and the job's
    "submitted" row is stamped (clock_timestamp) before its tasks' rows. Without an owner row
    (a session that does not hold) nothing is written.

    The owner's quota (store/quotas.py) is checked in the same statement from the owner's running
    sums (``load``: the shards of user_load, migrations/0008, which a trigger on jobs keeps): only
    when this job's tasks fit under max_queued_tasks and the minute's submits are under
    max_submits_per_minute does ``win`` count the submit (in this connection's shard) and the job
    get made. Otherwise nothing is written and the final SELECT's quota columns say which limit
    held it back. Two submits of one user at the same moment on two connections may both see the
    sums before either: each quota may be passed by one job per submit running at that moment.
    """
    frames = parse_frames(req.frames)
    query = f"""WITH {head}owner AS ({owner}),
           limits AS ({quotas.LIMITS}),
           load AS (
               SELECT COALESCE(sum(l.queued_tasks), 0) AS queued,
                      COALESCE(sum(l.submits) FILTER (WHERE l.minute = date_trunc('minute', now())), 0) AS submits
               FROM owner JOIN user_load l ON l.user_id = owner.id),
           win AS (
               INSERT INTO user_load AS l (user_id, shard, minute, submits)
               SELECT owner.id, rfarm_load_shard(), date_trunc('minute', now()), 1 FROM owner, limits, load
               WHERE load.queued + %(tasks)s <= limits.max_queued_tasks
                 AND load.submits < limits.max_submits_per_minute
               ON CONFLICT (user_id, shard) DO UPDATE
               SET submits = CASE WHEN l.minute = EXCLUDED.minute THEN l.submits + 1 ELSE 1 END,
                   minute = EXCLUDED.minute
               RETURNING user_id),
           job AS (
               INSERT INTO jobs (owner_id, name, renderer, params, frame_first, frame_last, chunk, priority,
                                 max_attempts, pool, requires, after_job, frames_total, tasks_total, limits,
                                 task_timeout)
               SELECT owner.id, %(name)s::text, %(renderer)s::text, %(params)s::jsonb, %(first)s::int,
                      %(last)s::int, %(chunk)s::int, %(priority)s::int, %(max_attempts)s::int, %(pool)s::text,
                      %(requires)s::text[], %(after)s::bigint, %(total)s::int, %(tasks)s::int,
                      %(limits)s::text[], %(task_timeout)s::int
               FROM owner
               WHERE EXISTS (SELECT 1 FROM win)
               RETURNING id),
           job_row AS ({_SUBMITTED_JOB}),
           task AS (
               INSERT INTO tasks (job_id, seq, frame_first, frame_last, pool, priority, owner_id)
               SELECT job_row.job_id, g, %(first)s + g * %(chunk)s,
                      LEAST(%(first)s + (g + 1) * %(chunk)s - 1, %(last)s), %(pool)s, %(priority)s, owner.id
               -- numbered per job row (the LATERAL reference): a job refused by a quota costs no numbers
               FROM owner, job_row,
                    LATERAL rfarm_task_seqs(CASE WHEN job_row.job_id IS NOT NULL THEN %(tasks)s END) AS g
               ORDER BY g
               RETURNING id, job_id),
           task_rows AS ({_SUBMITTED_TASKS})
           {f", answer AS ({answer.sql('job')})" if answer else ""}"""
    params = {
        "name": req.name,
        "renderer": req.renderer,
        "params": Jsonb(req.params),
        "first": frames.first,
        "last": frames.last,
        "chunk": req.chunk,
        "priority": req.priority,
        "max_attempts": req.max_attempts,
        "pool": req.pool,
        "requires": sorted(set(req.requires)),
        "after": req.after,
        "limits": sorted(set(req.limits)),
        "task_timeout": req.task_timeout,
        "total": frames.count,
        "tasks": len(frames.chunks(req.chunk)),
        **(answer.params() if answer else {}),
    }
    return query, params
