"""The store's transitions against the real PostgreSQL: each guarded by the transition tables,
each recorded in history by its one writer, bulk moves included; retry refused while a job's
dependency can no longer succeed."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from broker_contracts.errors import ErrorCode, RfarmError
from broker_contracts.messages import SubmitRequest
from broker_contracts.states import JobStatus, TaskStatus, replay_is_legal
from store import jobs, submit, tasks, users
from store.db import open_pool, transaction

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def pool(database_url: str) -> Iterator[ConnectionPool]:
    pool = open_pool(database_url, max_size=2, name="transitions")
    yield pool
    pool.close()


@pytest.fixture
def owner(pool: ConnectionPool) -> Iterator[users.User]:
    with transaction(pool) as conn:
        user = users.create_user(conn, f"t{secrets.token_hex(4)}", "not-a-hash")
    yield user
    with transaction(pool) as conn:  # whatever the test did, the quota's running sum kept up with it
        kept, counted = _queued_tasks(conn, user.id)
    assert kept == counted


def _queued_tasks(conn: psycopg.Connection, user_id: int) -> tuple[int, int]:
    """The user's queued-or-running tasks as the running sums of user_load say, and counted anew."""
    row = conn.execute(
        """SELECT (SELECT COALESCE(sum(queued_tasks), 0) FROM user_load WHERE user_id = %(u)s) AS kept,
                  (SELECT COALESCE(sum(tasks_total), 0) FROM jobs
                   WHERE owner_id = %(u)s AND finished_at IS NULL) AS counted""",
        {"u": user_id},
    ).fetchone()
    return int(row["kept"]), int(row["counted"])  # type: ignore[index]


def _submit(pool: ConnectionPool, owner: users.User, **fields: object) -> int:
    with transaction(pool) as conn:
        return submit.submit(conn, owner, SubmitRequest.model_validate({"name": "j", "frames": "1-3", **fields}))


def _job(pool: ConnectionPool, owner: users.User, job_id: int) -> dict:
    with transaction(pool) as conn:
        return jobs.get(conn, owner, job_id, lock=True)


def _statuses(conn: psycopg.Connection, job_id: int) -> list[str]:
    rows = conn.execute("SELECT status FROM tasks WHERE job_id = %s ORDER BY seq", (job_id,)).fetchall()
    return [r["status"] for r in rows]  # type: ignore[call-overload]


def _chains_are_legal(conn: psycopg.Connection, job_id: int) -> None:
    """Every task's history and the job's own replay through the tables, step by step."""
    rows = conn.execute(
        "SELECT task_id, from_status, to_status FROM task_history WHERE job_id = %s ORDER BY id", (job_id,)
    ).fetchall()
    by_task: dict[int, list[tuple[str | None, str]]] = {}
    for r in rows:
        by_task.setdefault(r["task_id"], []).append((r["from_status"], r["to_status"]))  # type: ignore[call-overload]
    for chain in by_task.values():
        assert replay_is_legal(chain) == (True, ""), chain
    job_rows = conn.execute(
        "SELECT from_status, to_status FROM job_history WHERE job_id = %s ORDER BY id", (job_id,)
    ).fetchall()
    job_chain = [(r["from_status"], r["to_status"]) for r in job_rows]  # type: ignore[call-overload]
    assert replay_is_legal(job_chain, kind="job") == (True, ""), job_chain


def test_retry_is_refused_while_the_dependency_cannot_succeed(pool: ConnectionPool, owner: users.User) -> None:
    first = _submit(pool, owner)
    second = _submit(pool, owner, after=first)
    with transaction(pool) as conn:
        jobs.cancel(conn, first, JobStatus.QUEUED, owner.username)
        assert jobs.fail_dependents(conn) == [second]
        assert _statuses(conn, second) == [TaskStatus.FAILED] * 3
    dependent = _job(pool, owner, second)
    assert dependent["status"] == JobStatus.FAILED and f"job {first}" in dependent["reason"]

    with pytest.raises(RfarmError) as refused, transaction(pool) as conn:
        jobs.retry(conn, dependent, owner.username)
    assert refused.value.code == ErrorCode.JOB_INVALID_STATE
    assert refused.value.message == f"job {second} waits on job {first}, which was cancelled: retry job {first} first"
    assert _job(pool, owner, second)["status"] == JobStatus.FAILED  # nothing changed

    with transaction(pool) as conn:
        jobs.retry(conn, jobs.get(conn, owner, first, lock=True), owner.username)
        jobs.retry(conn, jobs.get(conn, owner, second, lock=True), owner.username)
        assert jobs.fail_dependents(conn) == []
        assert _statuses(conn, second) == [TaskStatus.QUEUED] * 3
        assert jobs.get(conn, owner, second)["status"] == JobStatus.QUEUED
        for job_id in (first, second):
            _chains_are_legal(conn, job_id)


def test_retry_waits_on_a_dependency_that_is_only_running(pool: ConnectionPool, owner: users.User) -> None:
    first = _submit(pool, owner, frames="1")
    second = _submit(pool, owner, after=first)
    with transaction(pool) as conn:
        jobs.cancel(conn, second, JobStatus.QUEUED, owner.username)
        task = tasks.lock(conn, conn.execute("SELECT id FROM tasks WHERE job_id = %s", (first,)).fetchone()["id"])  # type: ignore[index]
        assert task is not None and tasks.start(conn, task, "run-1", "n1", 30.0)
        jobs.refresh_status(conn, first, "started", "n1")
        jobs.retry(conn, jobs.get(conn, owner, second, lock=True), owner.username)  # no refusal: it may succeed
        assert jobs.get(conn, owner, second)["status"] == JobStatus.QUEUED


def test_cancel_moves_every_unfinished_task_with_its_history(pool: ConnectionPool, owner: users.User) -> None:
    job_id = _submit(pool, owner)
    with transaction(pool) as conn:
        task = tasks.lock(
            conn, conn.execute("SELECT min(id) AS id FROM tasks WHERE job_id = %s", (job_id,)).fetchone()["id"]
        )  # type: ignore[index]
        assert task is not None and tasks.start(conn, task, "run-1", "n1", 30.0)
        jobs.refresh_status(conn, job_id, "started", "n1")
        jobs.cancel(conn, job_id, JobStatus.RUNNING, owner.username)
        assert _statuses(conn, job_id) == [TaskStatus.CANCELLED] * 3
        moved = conn.execute(
            """SELECT from_status, actor, reason FROM task_history
               WHERE job_id = %s AND to_status = 'cancelled' ORDER BY task_id""",
            (job_id,),
        ).fetchall()
        assert [r["from_status"] for r in moved] == ["running", "queued", "queued"]  # type: ignore[call-overload]
        assert {(r["actor"], r["reason"]) for r in moved} == {(owner.username, f"cancelled by {owner.username}")}  # type: ignore[call-overload]
        assert jobs.get(conn, owner, job_id)["status"] == JobStatus.CANCELLED
        _chains_are_legal(conn, job_id)


def test_a_bulk_move_obeys_the_table(pool: ConnectionPool, owner: users.User) -> None:
    job_id = _submit(pool, owner)
    with transaction(pool) as conn:
        for illegal in ({TaskStatus.SUCCEEDED}, {TaskStatus.QUEUED, TaskStatus.SUCCEEDED}, set()):
            with pytest.raises(ValueError, match="may not move"):
                tasks.move_all(conn, job_id, frozenset(illegal), TaskStatus.QUEUED, "r", "a", sets="error = NULL")
        with pytest.raises(ValueError, match="may not move"):
            tasks.move_all(
                conn, job_id, frozenset({TaskStatus.QUEUED}), TaskStatus.SUCCEEDED, "r", "a", sets="error = NULL"
            )
        assert _statuses(conn, job_id) == [TaskStatus.QUEUED] * 3


def test_a_refused_job_transition_writes_no_history(pool: ConnectionPool, owner: users.User) -> None:
    job_id = _submit(pool, owner)
    with transaction(pool) as conn:
        before = conn.execute("SELECT count(*) AS n FROM job_history WHERE job_id = %s", (job_id,)).fetchone()
        assert jobs.set_status(conn, job_id, JobStatus.QUEUED, JobStatus.QUEUED, "r", "a") is None  # not in the table
        assert jobs.set_status(conn, job_id, JobStatus.RUNNING, JobStatus.SUCCEEDED, "r", "a") is None  # stale guard
        after = conn.execute("SELECT count(*) AS n FROM job_history WHERE job_id = %s", (job_id,)).fetchone()
        assert before == after
        assert jobs.set_status(conn, job_id, JobStatus.QUEUED, JobStatus.FAILED, "why", "a") == JobStatus.FAILED
        job = jobs.get(conn, owner, job_id)
        assert job["status"] == JobStatus.FAILED and job["reason"] == "why"
        _chains_are_legal(conn, job_id)


def test_the_queued_tasks_sum_follows_a_job_to_its_end_and_back(pool: ConnectionPool, owner: users.User) -> None:
    job_id = _submit(pool, owner, frames="1-4", chunk=2)
    other = _submit(pool, owner, frames="1-3")
    with transaction(pool) as conn:
        assert _queued_tasks(conn, owner.id) == (5, 5)
        for row in conn.execute("SELECT id FROM tasks WHERE job_id = %s ORDER BY seq", (job_id,)).fetchall():
            task = tasks.lock(conn, row["id"])  # type: ignore[call-overload]
            assert task is not None and tasks.start(conn, task, f"run-{task.id}", "n1", 30.0)
            task = tasks.lock(conn, row["id"])  # type: ignore[call-overload]
            assert task is not None and tasks.succeed(conn, task, f"run-{task.id}", "n1")
        jobs.refresh_status(conn, job_id, "done", "n1")
        assert jobs.get(conn, owner, job_id)["status"] == JobStatus.SUCCEEDED
        assert _queued_tasks(conn, owner.id) == (3, 3)  # a finished job's tasks no longer count
        jobs.cancel(conn, other, JobStatus.QUEUED, owner.username)
        assert _queued_tasks(conn, owner.id) == (0, 0)
        jobs.retry(conn, jobs.get(conn, owner, other, lock=True), owner.username)
        assert _queued_tasks(conn, owner.id) == (3, 3)  # retried: its tasks count again
