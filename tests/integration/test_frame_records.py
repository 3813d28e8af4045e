"""Frame records from node reports, by the real ledger against PostgreSQL: what is kept, what is
refused, and the times and estimate made from them (show, jobs)."""

from __future__ import annotations

import base64
import io
import secrets
import threading
import time
from collections.abc import Iterator
from itertools import count
from typing import Any

import pytest
import redis
from PIL import Image

from broker_contracts import messages as m
from broker_contracts.codec import pack
from broker_contracts.signing import Signer, new_pair
from broker_contracts.work import NodeEvent
from gateway.context import GatewayConfig
from gateway.frames import estimate
from gateway.ledger import Ledger
from store import credentials, frames, jobs, users
from store import submit as submitting
from store.db import open_pool, transaction

pytestmark = pytest.mark.timeout(60)
_ids = count(1)


@pytest.fixture
def ledger(redis_url: str, database_url: str, prefix: str) -> Iterator[Ledger]:
    pool = open_pool(database_url, max_size=2, name="frame-records")
    pool.wait(timeout=10)
    r = redis.Redis.from_url(redis_url)
    try:
        config = GatewayConfig(prefix=prefix, require_node_credentials=True)
        yield Ledger(r, pool, config, "frames", threading.Event(), threading.Event())
    finally:
        pool.close()
        r.close()


def apply(ledger: Ledger, signers: dict[str, Signer], *events: NodeEvent) -> None:
    entries = []
    for ev in events:
        if ev.node not in signers:
            seed, public = new_pair()
            with transaction(ledger.pool) as conn:
                credentials.add_node(conn, ev.node, public, replace=True)
            signers[ev.node] = Signer(seed)
        data = pack(ev.model_dump(mode="json", exclude_none=True))
        entries.append((f"{next(_ids)}-0", {b"m": data, b"s": signers[ev.node].sign_event(ledger.keys.prefix, data)}))
    ledger.process(entries)


def thumb() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 9), (200, 10, 10)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def ev(kind: str, job: int, task: int, run: str, node: str, **fields: Any) -> NodeEvent:
    return NodeEvent(kind=kind, node=node, ts=time.time(), task_id=task, job_id=job, run=run, attempt=1,  # type: ignore[arg-type]
                     work=None, **fields)


def frame(job: int, task: int, run: str, node: str, n: int, seconds: float, png: str | None) -> NodeEvent:
    return ev("progress", job, task, run, node, frame=n, done_frames=n, seconds=seconds, file=f"/r/job-{job}/f{n}.png",
              bytes=100 + n, sha256=f"{n:064x}", thumb=png)


def test_frames_are_kept_from_the_running_attempt_only_and_make_the_estimate(ledger: Ledger) -> None:
    signers: dict[str, Signer] = {}
    na, nb = f"fa{secrets.token_hex(3)}", f"fb{secrets.token_hex(3)}"  # nodes of this test's own
    with transaction(ledger.pool) as conn:
        owner = users.create_user(conn, f"o{secrets.token_hex(4)}", "not-a-hash")
        body = m.SubmitRequest.model_validate({"name": "j", "frames": "1-4", "chunk": 2})
        job_id = submitting.submit(conn, owner, body)
        first, second = [r["id"] for r in conn.execute(  # type: ignore[call-overload]
            "SELECT id FROM tasks WHERE job_id = %s ORDER BY seq", (job_id,)).fetchall()]
    apply(ledger, signers, ev("started", job_id, first, "a", na))
    apply(
        ledger,
        signers,
        frame(job_id, first, "a", na, 1, 2.0, thumb()),
        frame(job_id, first, "a", na, 2, 4.0, base64.b64encode(b"not a png").decode()),
        frame(job_id, first, "b", nb, 2, 9.0, thumb()),  # another node, not the task's run: ignored
        frame(job_id, first, "a", na, 3, 9.0, thumb()).model_copy(update={"done_frames": 2}),  # not its frame
    )
    with transaction(ledger.pool) as conn:
        listed = frames.frames_of(conn, job_id, after=None, limit=10)
        got, more = frames.thumbs_of(conn, job_id, frame=None, after=None, budget=1 << 20)
        times = frames.times_of(conn, job_id)
        job = conn.execute(f"SELECT {jobs.DETAIL_COLUMNS} FROM jobs j JOIN users u ON u.id = j.owner_id "
                           "WHERE j.id = %s", (job_id,)).fetchone()
        tasks = [m.TaskInfo.model_validate(t) for t in jobs.tasks_of(conn, job_id)]
        detail = m.JobDetail.model_validate(job)
        estimated = estimate(conn, detail, tasks)
    assert [(f["frame"], f["status"], f["node"], f["seconds"]) for f in listed] == [
        (1, "done", na, 2.0), (2, "done", na, 4.0), (3, "queued", None, None), (4, "queued", None, None)]
    assert listed[0]["file"] == f"/r/job-{job_id}/f1.png" and listed[0]["bytes"] == 101
    assert [t["frame"] for t in got] == [1] and more is None  # frame 2's thumbnail was no PNG: not kept
    assert times == {"done": 2, "min": 2.0, "mean": 3.0, "max": 4.0}
    # two frames left at 3 s each, one task running: 6 s
    assert detail.eta_seconds == pytest.approx(6.0) and estimated.left_seconds == pytest.approx(6.0)
    assert estimated.finishes_at is not None and (estimated.min, estimated.max) == (2.0, 4.0)

    # a frame reported again replaces its record (one row per frame)
    apply(ledger, signers, frame(job_id, first, "a", na, 1, 1.0, None))
    with transaction(ledger.pool) as conn:
        again = frames.frames_of(conn, job_id, after=None, limit=1)[0]
        # the records go with their job (and task): a job's prune removes them
        kinds = conn.execute(
            """SELECT confrelid::regclass::text AS parent, confdeltype AS on_delete FROM pg_constraint
                WHERE conrelid = 'frames'::regclass AND contype = 'f' ORDER BY 1"""
        ).fetchall()
    assert (again["node"], again["seconds"]) == (na, 1.0)
    assert [(k["parent"], k["on_delete"]) for k in kinds] == [("jobs", "c"), ("tasks", "c")]
    _ = second
