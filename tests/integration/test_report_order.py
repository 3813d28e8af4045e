"""Node reports applied out of order, by the real ledger against the real PostgreSQL and Redis: a
run's last report that arrives before its "started" counts (both are applied, in order), the late
"started" then changes nothing, and reports of older runs or repeated ones change nothing."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from itertools import count
from typing import Any

import pytest
import redis

from broker_contracts.codec import pack
from broker_contracts.messages import SubmitRequest
from broker_contracts.signing import Signer, new_pair
from broker_contracts.work import NodeEvent
from gateway.context import GatewayConfig
from gateway.ledger import Ledger
from store import credentials, tasks, users
from store import submit as submitting
from store.db import open_pool, transaction

pytestmark = pytest.mark.timeout(60)

_ids = count(1)
_signers: dict[tuple[str, str], Signer] = {}  # (database, node) -> the key of the node's credential


@pytest.fixture
def ledger(redis_url: str, database_url: str, prefix: str) -> Iterator[Ledger]:
    pool = open_pool(database_url, max_size=2, name="report-order")
    pool.wait(timeout=10)
    r = redis.Redis.from_url(redis_url)
    try:
        # every report is signed by a credentialed node, as on a farm that requires credentials
        config = GatewayConfig(prefix=prefix, require_node_credentials=True)
        yield Ledger(r, pool, config, "order", threading.Event(), threading.Event())
    finally:
        pool.close()
        r.close()


def submit(ledger: Ledger, max_attempts: int) -> tuple[int, int]:
    """A one-task job: (job id, task id)."""
    with transaction(ledger.pool) as conn:
        owner = users.create_user(conn, f"o{secrets.token_hex(4)}", "not-a-hash")
        job_id = submitting.submit(
            conn, owner, SubmitRequest.model_validate({"name": "j", "frames": "1", "max_attempts": max_attempts})
        )
        row = conn.execute("SELECT id FROM tasks WHERE job_id = %s", (job_id,)).fetchone()
    assert row is not None
    return job_id, row["id"]  # type: ignore[call-overload]


def report(kind: str, job_id: int, task_id: int, run: str, attempt: int, **fields: Any) -> NodeEvent:
    """A report as a node sends it: its last one says when the run started."""
    if kind != "started":
        fields.setdefault("started", time.time() - 1)
    return NodeEvent(
        kind=kind,  # type: ignore[arg-type]
        node=f"n{run}",
        ts=time.time(),
        task_id=task_id,
        job_id=job_id,
        run=run,
        attempt=attempt,
        **fields,
    )


def signer(ledger: Ledger, node: str) -> Signer:
    """Node ``node``'s credential, issued the first time it reports."""
    key = (ledger.pool.conninfo, node)
    if key not in _signers:
        seed, public = new_pair()
        with transaction(ledger.pool) as conn:
            credentials.add_node(conn, node, public, replace=True)
        _signers[key] = Signer(seed)
    return _signers[key]


def apply(ledger: Ledger, *events: NodeEvent) -> None:
    """One batch, as the ledger reads it from the events stream, each report signed by its node."""
    entries = []
    for ev in events:
        data = pack(ev.model_dump(mode="json", exclude_none=True))
        signature = signer(ledger, ev.node).sign_event(ledger.keys.prefix, data)
        entries.append((f"{next(_ids)}-0", {b"m": data, b"s": signature}))
    ledger.process(entries)


def state(ledger: Ledger, job_id: int, task_id: int) -> dict[str, Any]:
    with transaction(ledger.pool) as conn:
        task = conn.execute(
            """SELECT status, attempt, failures, run_id, node, started_at, finished_at, lease_until, dispatched_at
               FROM tasks WHERE id = %s""",
            (task_id,),
        ).fetchone()
        job = conn.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()
        history = conn.execute(
            "SELECT from_status, to_status, attempt, actor FROM task_history WHERE task_id = %s ORDER BY id",
            (task_id,),
        ).fetchall()
        job_history = conn.execute(
            "SELECT from_status, to_status FROM job_history WHERE job_id = %s ORDER BY id", (job_id,)
        ).fetchall()
    assert task is not None and job is not None
    return {
        **dict(task),  # type: ignore[call-overload]
        "job": job["status"],  # type: ignore[call-overload]
        "history": [tuple(h.values()) for h in history],  # type: ignore[attr-defined]
        "job_history": [tuple(h.values()) for h in job_history],  # type: ignore[attr-defined]
    }


@pytest.mark.parametrize("batches", ["apart", "together"])
def test_a_success_before_its_start_counts(ledger: Ledger, batches: str) -> None:
    """--max-attempts 1: the frame was rendered once, so the job succeeds and nothing renders again."""
    job_id, task_id = submit(ledger, max_attempts=1)
    started_at = time.time() - 5
    done = report("succeeded", job_id, task_id, "a", 1, exit_code=0, done_frames=1, started=started_at)
    start = report("started", job_id, task_id, "a", 1)
    if batches == "apart":
        apply(ledger, done)
        apply(ledger, start)
    else:
        apply(ledger, done, start)
    s = state(ledger, job_id, task_id)
    assert (s["status"], s["job"], s["attempt"], s["failures"], s["run_id"]) == ("succeeded", "succeeded", 1, 0, "a")
    assert s["history"] == [
        (None, "queued", 0, s["history"][0][3]),
        ("queued", "running", 1, "na"),
        ("running", "succeeded", 1, "na"),
    ]
    assert s["job_history"][-2:] == [("queued", "running"), ("running", "succeeded")]
    assert abs(s["started_at"].timestamp() - started_at) < 0.01  # when the node started it
    assert s["lease_until"] is None  # nothing left for the lease check to render again


def test_a_failure_before_its_start_counts_once(ledger: Ledger) -> None:
    job_id, task_id = submit(ledger, max_attempts=2)
    apply(ledger, report("failed", job_id, task_id, "a", 1, exit_code=3, error="boom"))
    apply(ledger, report("started", job_id, task_id, "a", 1))  # late: its run is over
    s = state(ledger, job_id, task_id)
    assert (s["status"], s["attempt"], s["failures"], s["run_id"]) == ("queued", 1, 1, None)
    assert [h[:3] for h in s["history"][1:]] == [("queued", "running", 1), ("running", "queued", 1)]
    # the next dispatch (attempt 2) runs and succeeds as usual
    apply(ledger, report("started", job_id, task_id, "b", 2))
    apply(ledger, report("succeeded", job_id, task_id, "b", 2, exit_code=0, done_frames=1))
    s = state(ledger, job_id, task_id)
    assert (s["status"], s["job"], s["attempt"], s["run_id"]) == ("succeeded", "succeeded", 2, "b")


def test_reports_of_an_older_run_change_nothing(ledger: Ledger) -> None:
    """Run a (attempt 1) failed and its task went to attempt 2 on run b; a's reports then arrive
    again (redelivered after a gateway crash), or a's node, presumed dead, still reports."""
    job_id, task_id = submit(ledger, max_attempts=3)
    apply(ledger, report("started", job_id, task_id, "a", 1))
    apply(ledger, report("failed", job_id, task_id, "a", 1, exit_code=1, error="x"))
    apply(ledger, report("started", job_id, task_id, "b", 2))
    before = state(ledger, job_id, task_id)
    assert (before["status"], before["run_id"], before["attempt"]) == ("running", "b", 2)
    apply(ledger, report("started", job_id, task_id, "a", 1))
    apply(ledger, report("succeeded", job_id, task_id, "a", 1, exit_code=0, done_frames=1))
    assert state(ledger, job_id, task_id) == before


def test_a_success_of_a_run_whose_lease_lapsed_changes_nothing(ledger: Ledger) -> None:
    job_id, task_id = submit(ledger, max_attempts=3)
    apply(ledger, report("started", job_id, task_id, "a", 1))
    with transaction(ledger.pool) as conn:
        task = tasks.lock(conn, task_id)
        assert task is not None
        assert tasks.fail(conn, task, None, "farm", None, "", cause="lease expired: node na went silent")
    before = state(ledger, job_id, task_id)
    assert (before["status"], before["attempt"]) == ("queued", 1)
    apply(ledger, report("succeeded", job_id, task_id, "a", 1, exit_code=0, done_frames=1))
    apply(ledger, report("started", job_id, task_id, "a", 1))
    assert state(ledger, job_id, task_id) == before


def test_a_repeated_success_changes_nothing(ledger: Ledger) -> None:
    job_id, task_id = submit(ledger, max_attempts=1)
    done = report("succeeded", job_id, task_id, "a", 1, exit_code=0, done_frames=1)
    apply(ledger, done)
    first = state(ledger, job_id, task_id)
    assert first["status"] == "succeeded"
    apply(ledger, done)
    apply(ledger, done, report("started", job_id, task_id, "a", 1), done)
    assert state(ledger, job_id, task_id) == first


def test_a_hand_back_before_its_start_leaves_the_task_queued(ledger: Ledger) -> None:
    """A node stopped mid-render: its "released" came first; the late "started" must not leave the
    task running (with nobody rendering it) until its lease lapses."""
    job_id, task_id = submit(ledger, max_attempts=1)
    apply(ledger, report("released", job_id, task_id, "a", 1, error="node stopping"))
    apply(ledger, report("started", job_id, task_id, "a", 1))
    s = state(ledger, job_id, task_id)
    assert (s["status"], s["attempt"], s["failures"], s["run_id"], s["dispatched_at"]) == ("queued", 1, 0, None, None)
    assert [h[:2] for h in s["history"][1:]] == [("queued", "running"), ("running", "queued")]
